#!/usr/bin/env python3
"""Build the two small ONNX models that modeaudit's tests and README use.

  digits-generator.onnx   z [N, 32] -> image [N, 1, 16, 16], values in [-1, 1]
  digits-descriptor.onnx  input [N, 3, 24, 24] -> embedding [N, 64]

Both are trained here on scikit-learn's bundled 8x8 handwritten digits (no
download) with plain NumPy (manual backprop, Adam), exported with onnx.helper,
checked against onnxruntime, and pinned down in digits-reference.json.
MODELS.md describes them. Rerunning gives byte-identical files on the same
machine and package versions (data/requirements-models.txt).

  python3 -m venv data/.venv
  data/.venv/bin/pip install -r data/requirements-models.txt
  data/.venv/bin/python data/make_models.py
"""

import os

# One BLAS thread, set before NumPy loads: the summation order, and so every
# bit of the trained weights, then does not depend on the number of cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import json
import pathlib
import time

import numpy as np
import onnx
import onnxruntime as ort
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUT = pathlib.Path(__file__).resolve().parent
GENERATOR_PATH = OUT / "digits-generator.onnx"
DESCRIPTOR_PATH = OUT / "digits-descriptor.onnx"
REFERENCE_PATH = OUT / "digits-reference.json"

OPSET = 17
IR_VERSION = 9  # below onnx 1.23's default (14), so older onnxruntimes load it too
TOLERANCE = 1e-5  # rtol and atol between NumPy and onnxruntime

LATENT = 32
GEN_SIZE = 16
DESC_SIZE = 24
EMBED = 64
CLASSES = 10
LEAK = np.float32(0.2)

GAN_SEED = 1
GAN_STEPS = 12000
GAN_BATCH = 64
GAN_G_HIDDEN = (128, 256)
GAN_D_HIDDEN = (256, 128)
GAN_NOISE = np.float32(0.2)

DESC_SEED = 2
DESC_EPOCHS = 15
DESC_BATCH = 64
DESC_CHANNELS = (8, 16)
DESC_SCALE = 8.0
DESC_MARGIN = 0.1

EVAL_SEED = 3
EVAL_SAMPLES = 2000
THETA = 0.3  # modeaudit's default neighbour distance
REFERENCE_SEED = 12345
REFERENCE_CODES = 4


# --------------------------------------------------------------- preprocessing


def resize_matrix(n_in, n_out):
    """Bilinear weights along one axis: half-pixel centres, edges clamped.

    Output pixel i samples the input at s = (i + 0.5) * n_in / n_out - 0.5,
    clamped to [0, n_in - 1], and takes (1 - f) of input pixel floor(s) and f
    of pixel min(floor(s) + 1, n_in - 1), where f = s - floor(s). This is ONNX
    Resize with mode=linear and coordinate_transformation_mode=half_pixel
    (checked against onnxruntime below). It does no antialiasing, so it is
    meant for upsampling.
    """
    s = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(s).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = s - lo
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), lo), 1 - frac)
    np.add.at(weights, (np.arange(n_out), hi), frac)
    return weights


def resize(images, size):
    """Resize [..., h, w] images to [..., size, size], in float64."""
    h, w = images.shape[-2:]
    return resize_matrix(h, size) @ images @ resize_matrix(w, size).T


def generator_targets(digits):
    """8x8 digits (0..16) -> the generator's [N, 256] training images in [-1, 1]."""
    return (resize(digits, GEN_SIZE) / 8 - 1).reshape(len(digits), -1).astype(np.float32)


def digits_to_descriptor_input(digits):
    """8x8 digits (0..16) -> descriptor input, as the descriptor was trained.

    Values map to 0..255 pixels (v * 255 / 16), then to (x - 127.5) / 127.5,
    i.e. v / 8 - 1; the grey channel is replicated into R, G and B.
    """
    pixels = resize(digits, DESC_SIZE) * (255 / 16)
    return grey_to_rgb((pixels - 127.5) / 127.5)


def generated_to_descriptor_input(images):
    """Generator images [N, 1, 16, 16] in [-1, 1] -> descriptor input.

    As pixels x = (g + 1) * 127.5 the descriptor's (x - 127.5) / 127.5 gives
    back g, so only the resize and the channel replication remain.
    """
    return grey_to_rgb(resize(images[:, 0], DESC_SIZE))


def grey_to_rgb(grey):
    """[N, H, W] -> [N, 3, H, W] float32."""
    return np.repeat(grey[:, None], 3, axis=1).astype(np.float32)


# ------------------------------------------------------------ layers and Adam


def dense_init(rng, n_in, n_out):
    # He-normal: keeps the activation scale through (Leaky)ReLU stacks.
    w = rng.standard_normal((n_in, n_out), dtype=np.float32) * np.float32(np.sqrt(2 / n_in))
    return [w, np.zeros(n_out, np.float32)]


def leaky_relu(a):
    return np.where(a > 0, a, LEAK * a)


def mlp_forward(params, x, tanh_out):
    """Dense layers (params = [W0, b0, W1, b1, ...]) with LeakyReLU(0.2)
    between them and tanh (or nothing) after the last."""
    layers = len(params) // 2
    inputs, pre = [], []
    for k in range(layers):
        inputs.append(x)
        pre.append(x @ params[2 * k] + params[2 * k + 1])
        if k < layers - 1:
            x = leaky_relu(pre[k])
        else:
            x = np.tanh(pre[k]) if tanh_out else pre[k]
    return x, (inputs, pre, x)


def mlp_backward(params, cache, tanh_out, d_out):
    """Gradients of the parameters and of the input, given d loss / d output."""
    inputs, pre, out = cache
    layers = len(params) // 2
    grads = [None] * len(params)
    d = d_out * (1 - out * out) if tanh_out else d_out
    for k in reversed(range(layers)):
        if k < layers - 1:
            d = d * np.where(pre[k] > 0, np.float32(1), LEAK)
        grads[2 * k] = inputs[k].T @ d
        grads[2 * k + 1] = d.sum(axis=0)
        d = d @ params[2 * k].T
    return grads, d


def conv_forward(x, w, b):
    """3x3 convolution, stride 1, zero padding 1 (ONNX Conv, pads=[1,1,1,1]).
    Columns hold each pixel's 3x3 neighbourhood in (channel, ky, kx) order,
    matching the [out, in, 3, 3] weight layout of ONNX."""
    n, c, h, wd = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = sliding_window_view(padded, (3, 3), axis=(2, 3))
    cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * 9)
    out = cols @ w.reshape(len(w), -1).T + b
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def conv_backward(d_out, x_shape, cols, w):
    n, c, h, wd = x_shape
    d = d_out.transpose(0, 2, 3, 1).reshape(n * h * wd, -1)
    dw = (d.T @ cols).reshape(w.shape)
    d_cols = (d @ w.reshape(len(w), -1)).reshape(n, h, wd, c, 3, 3)
    d_padded = np.zeros((n, c, h + 2, wd + 2), np.float32)
    for ky in range(3):
        for kx in range(3):
            d_padded[:, :, ky : ky + h, kx : kx + wd] += d_cols[..., ky, kx].transpose(0, 3, 1, 2)
    return d_padded[:, :, 1:-1, 1:-1], dw, d.sum(axis=0)


def pool_forward(x):
    """2x2 max pooling, stride 2; also returns which of the 4 won, for backward."""
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(n, c, h // 2, w // 2, 4)
    winner = windows.argmax(axis=-1)[..., None]
    return np.take_along_axis(windows, winner, axis=-1)[..., 0], winner


def pool_backward(d_out, winner, x_shape):
    n, c, h, w = x_shape
    d_windows = np.zeros((n, c, h // 2, w // 2, 4), np.float32)
    np.put_along_axis(d_windows, winner, d_out[..., None], axis=-1)
    d_windows = d_windows.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return d_windows.reshape(x_shape)


class Adam:
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        scale = self.lr * np.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= (scale * m / (np.sqrt(v) + self.eps)).astype(np.float32)


# ------------------------------------------------------------------ generator


def generator_forward(g, z):
    """[N, 32] latent codes -> [N, 1, 16, 16] images in [-1, 1]."""
    out, _ = mlp_forward(g, z, tanh_out=True)
    return out.reshape(len(z), 1, GEN_SIZE, GEN_SIZE)


def train_generator(targets):
    """An MLP GAN with the non-saturating generator loss.

    The discriminator sees its inputs, real and fake, with Gaussian noise of
    sd GAN_NOISE added ("instance noise"). Without it the discriminator's
    loss keeps falling and the generator narrows, step by step, to a few
    classes (3, 5, 8 and 9 make up 96% of its digits after 12,000 steps);
    with it the collapse stays partial."""
    rng = np.random.default_rng(GAN_SEED)
    g_sizes = (LATENT, *GAN_G_HIDDEN, GEN_SIZE * GEN_SIZE)
    d_sizes = (GEN_SIZE * GEN_SIZE, *GAN_D_HIDDEN, 1)
    g = [p for a, b in zip(g_sizes, g_sizes[1:]) for p in dense_init(rng, a, b)]
    d = [p for a, b in zip(d_sizes, d_sizes[1:]) for p in dense_init(rng, a, b)]
    # beta1 = 0.5 is the usual GAN setting: less momentum in a moving game.
    g_opt, d_opt = Adam(g, 2e-4, beta1=0.5), Adam(d, 2e-4, beta1=0.5)
    labels = np.r_[np.ones(GAN_BATCH), np.zeros(GAN_BATCH)].astype(np.float32)[:, None]
    history, d_losses, g_losses = [], [], []
    for step in range(1, GAN_STEPS + 1):
        real = targets[rng.integers(0, len(targets), GAN_BATCH)]
        z = rng.standard_normal((GAN_BATCH, LATENT), dtype=np.float32)
        fake, g_cache = mlp_forward(g, z, tanh_out=True)

        # Discriminator: binary cross-entropy on logits, real 1, fake 0.
        seen = np.concatenate([real, fake])
        seen += GAN_NOISE * rng.standard_normal(seen.shape, dtype=np.float32)
        logits, cache = mlp_forward(d, seen, tanh_out=False)
        d_losses.append(float(np.mean(np.logaddexp(0, logits) - labels * logits)))
        grads, _ = mlp_backward(d, cache, False, (sigmoid(logits) - labels) / len(labels))
        d_opt.step(grads)

        # Generator: -log D(G(z)) through the just-updated discriminator.
        seen = fake + GAN_NOISE * rng.standard_normal(fake.shape, dtype=np.float32)
        logits, cache = mlp_forward(d, seen, tanh_out=False)
        g_losses.append(float(np.mean(np.logaddexp(0, -logits))))
        _, d_fake = mlp_backward(d, cache, False, (sigmoid(logits) - 1) / GAN_BATCH)
        grads, _ = mlp_backward(g, g_cache, True, d_fake)
        g_opt.step(grads)

        if step % (GAN_STEPS // 6) == 0:
            history.append({"step": step, "d_loss": float(np.mean(d_losses)), "g_loss": float(np.mean(g_losses))})
            d_losses, g_losses = [], []
    return g, history


def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


# ----------------------------------------------------------------- descriptor


def descriptor_forward(p, x):
    """[N, 3, 24, 24] -> (embedding [N, 64], cosine to each class [N, 10], cache).

    p = [conv1 w, b, conv2 w, b, embed w, b, class directions [64, 10]]. Only
    the embedding is exported; the classes are scored by cosine (NormFace), so
    an embedding's direction is what tells digits apart."""
    a1, cols1 = conv_forward(x, p[0], p[1])
    h1, win1 = pool_forward(np.maximum(a1, 0))
    a2, cols2 = conv_forward(h1, p[2], p[3])
    h2, win2 = pool_forward(np.maximum(a2, 0))
    flat = h2.reshape(len(x), -1)
    emb = flat @ p[4] + p[5]
    emb_norm = np.linalg.norm(emb, axis=1, keepdims=True)
    dir_norm = np.linalg.norm(p[6], axis=0, keepdims=True)
    cos = (emb / emb_norm) @ (p[6] / dir_norm)
    return emb, cos, (x.shape, a1, cols1, win1, h1.shape, a2, cols2, win2, flat, emb, emb_norm, dir_norm)


def descriptor_backward(p, cache, d_cos):
    x_shape, a1, cols1, win1, h1_shape, a2, cols2, win2, flat, emb, emb_norm, dir_norm = cache
    grads = [None] * len(p)
    u, w = emb / emb_norm, p[6] / dir_norm
    # Through the normalisations: only the components orthogonal to each unit
    # vector change the cosine.
    d_u, d_w = d_cos @ w.T, u.T @ d_cos
    grads[6] = (d_w - w * np.sum(d_w * w, axis=0, keepdims=True)) / dir_norm
    d = (d_u - u * np.sum(d_u * u, axis=1, keepdims=True)) / emb_norm
    grads[4] = flat.T @ d
    grads[5] = d.sum(axis=0)
    d = (d @ p[4].T).reshape(len(flat), DESC_CHANNELS[1], DESC_SIZE // 4, DESC_SIZE // 4)
    d = pool_backward(d, win2, a2.shape) * (a2 > 0)
    d, grads[2], grads[3] = conv_backward(d, h1_shape, cols2, p[2])
    d = pool_backward(d, win1, a1.shape) * (a1 > 0)
    _, grads[0], grads[1] = conv_backward(d, x_shape, cols1, p[0])
    return grads


def train_descriptor(x_train, y_train):
    """CosFace training: softmax over DESC_SCALE * (cosine - DESC_MARGIN on
    the true class). Directions then separate the classes (different digits
    near-orthogonal), as identity descriptors do, which a plain softmax head
    does not give (its embeddings share one large common direction)."""
    rng = np.random.default_rng(DESC_SEED)
    c1, c2 = DESC_CHANNELS
    flat = c2 * (DESC_SIZE // 4) ** 2
    p = []
    for c_in, c_out in ((3, c1), (c1, c2)):
        w, b = dense_init(rng, c_in * 9, c_out)
        p += [np.ascontiguousarray(w.T.reshape(c_out, c_in, 3, 3)), b]
    p += dense_init(rng, flat, EMBED)
    p.append(rng.standard_normal((EMBED, CLASSES), dtype=np.float32))
    opt = Adam(p, 1e-3)
    history = []
    for epoch in range(1, DESC_EPOCHS + 1):
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order), DESC_BATCH):
            batch = order[start : start + DESC_BATCH]
            _, cos, cache = descriptor_forward(p, x_train[batch])
            onehot = np.eye(CLASSES, dtype=np.float32)[y_train[batch]]
            prob = softmax(DESC_SCALE * (cos - DESC_MARGIN * onehot))
            losses.append(float(-np.mean(np.log(np.sum(prob * onehot, axis=1)))))
            opt.step(descriptor_backward(p, cache, DESC_SCALE * (prob - onehot) / len(batch)))
        history.append({"epoch": epoch, "loss": float(np.mean(losses))})
    return p, history


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def embed(p, x, batch=500):
    """Embeddings and class probabilities, in batches to bound memory."""
    parts = [descriptor_forward(p, x[i : i + batch])[:2] for i in range(0, len(x), batch)]
    cos = np.concatenate([c for _, c in parts])
    return np.concatenate([e for e, _ in parts]), softmax(DESC_SCALE * cos)


# --------------------------------------------------------------------- export


def save_model(graph, path):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="modeaudit data/make_models.py",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())


def export_generator(g, path):
    inits, nodes, x = [], [], "z"
    layers = len(g) // 2
    for k in range(layers):
        inits += [numpy_helper.from_array(g[2 * k], f"dense{k}.weight"),
                  numpy_helper.from_array(g[2 * k + 1], f"dense{k}.bias")]
        nodes.append(helper.make_node("Gemm", [x, f"dense{k}.weight", f"dense{k}.bias"], [f"dense{k}"]))
        x = f"dense{k}"
        if k < layers - 1:
            nodes.append(helper.make_node("LeakyRelu", [x], [f"act{k}"], alpha=float(LEAK)))
            x = f"act{k}"
    inits.append(numpy_helper.from_array(np.array([-1, 1, GEN_SIZE, GEN_SIZE], np.int64), "image_shape"))
    nodes += [helper.make_node("Tanh", [x], ["pixels"]),
              helper.make_node("Reshape", ["pixels", "image_shape"], ["image"])]
    graph = helper.make_graph(
        nodes, "digits_generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", LATENT])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, GEN_SIZE, GEN_SIZE])],
        inits,
        doc_string="MLP GAN generator for 8x8 sklearn digits upsampled to 16x16. "
        "z: standard normal latent codes. image: NCHW grey, values in [-1, 1] (ink is high).",
    )
    save_model(graph, path)


def export_descriptor(p, path):
    names = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "embed.weight", "embed.bias"]
    inits = [numpy_helper.from_array(a, n) for a, n in zip(p, names)]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    pool = dict(kernel_shape=[2, 2], strides=[2, 2])
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1"], **conv),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], **pool),
        helper.make_node("Conv", ["pool1", "conv2.weight", "conv2.bias"], ["conv2"], **conv),
        helper.make_node("Relu", ["conv2"], ["relu2"]),
        helper.make_node("MaxPool", ["relu2"], ["pool2"], **pool),
        helper.make_node("Flatten", ["pool2"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "embed.weight", "embed.bias"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "digits_descriptor",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, DESC_SIZE, DESC_SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBED])],
        inits,
        doc_string="CNN digit descriptor. input: NCHW RGB 24x24, (x - 127.5) / 127.5 for "
        "pixels x in 0..255 (ink is high). embedding: the layer under a cosine (CosFace) "
        "digit classifier, not normalised; compare embeddings by cosine.",
    )
    save_model(graph, path)


def run_onnx(path, name, x):
    # One thread is plenty for these batches, and leaves the other cores be.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: x})[0]


def onnx_resize(images, size):
    """[N, 1, h, w] -> [N, 1, size, size] through onnxruntime's Resize op,
    to check that resize() is ONNX's linear/half_pixel resize."""
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"],
                            mode="linear", coordinate_transformation_mode="half_pixel")
    graph = helper.make_graph(
        [node], "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, size, size])],
        [numpy_helper.from_array(np.array([len(images), 1, size, size], np.int64), "sizes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": images.astype(np.float32)})[0]


def check_close(name, actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=TOLERANCE, atol=TOLERANCE, err_msg=name)
    print(f"  {name}: max |diff| {np.max(np.abs(actual - expected)):.2e}")


# ---------------------------------------------------------------- evaluation


def mean_pairwise_cosine(e):
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    n = len(u)
    return float((np.sum(u.sum(axis=0) ** 2) - n) / (n * (n - 1)))


def neighbour_shares(e, theta=THETA):
    """For each sample, the share of the others within modeaudit's distance
    arccos(cosine) / pi <= theta: its mean, 99th percentile and maximum (the
    most crowded sample, where a worst-case mode would be)."""
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    share = (np.sum(u @ u.T >= np.cos(np.pi * theta), axis=1) - 1) / (len(u) - 1)
    return {"mean": float(share.mean()), "p99": float(np.quantile(share, 0.99)), "max": float(share.max())}


def collapse_report(g, p, real_digits):
    """How collapsed the generator is, judged by the descriptor.

    Real digits take the generator's own route (8x8 -> 16x16 -> 24x24) so
    that both sides see the same resizes."""
    z = np.random.default_rng(EVAL_SEED).standard_normal((EVAL_SAMPLES, LATENT), dtype=np.float32)
    gen_emb, gen_prob = embed(p, generated_to_descriptor_input(generator_forward(g, z)))
    real_images = generator_targets(real_digits).reshape(-1, 1, GEN_SIZE, GEN_SIZE)
    real_emb, real_prob = embed(p, generated_to_descriptor_input(real_images))
    gen_class, real_class = gen_prob.argmax(axis=1), real_prob.argmax(axis=1)
    hist = np.bincount(gen_class, minlength=CLASSES)
    per_class = {}
    for c in range(CLASSES):
        gen_c, real_c = gen_emb[gen_class == c], real_emb[real_class == c]
        per_class[str(c)] = {
            "generated_share": float(hist[c] / EVAL_SAMPLES),
            "generated_cosine": mean_pairwise_cosine(gen_c) if len(gen_c) > 1 else None,
            "real_cosine": mean_pairwise_cosine(real_c),
        }
    return {
        "samples": EVAL_SAMPLES,
        "latent_rng": f"numpy.random.default_rng({EVAL_SEED}).standard_normal(({EVAL_SAMPLES}, {LATENT}), dtype=float32)",
        "class_histogram": hist.tolist(),
        "top_class": int(hist.argmax()),
        "top_class_share": float(hist.max() / EVAL_SAMPLES),
        "classes_seen": int(np.count_nonzero(hist)),
        "mean_confidence_generated": float(gen_prob.max(axis=1).mean()),
        "mean_confidence_real": float(real_prob.max(axis=1).mean()),
        "mean_pairwise_cosine_generated": mean_pairwise_cosine(gen_emb),
        "mean_pairwise_cosine_real": mean_pairwise_cosine(real_emb),
        "theta": THETA,
        "neighbour_share_generated": neighbour_shares(gen_emb),
        "neighbour_share_real": neighbour_shares(real_emb),
        "per_class": per_class,
    }


# ------------------------------------------------------------------ reference


def as_list(a):
    """Exact float32 values as JSON numbers (a float32 is exact as a double)."""
    return np.asarray(a, np.float32).astype(np.float64).tolist()


def reference(g, p):
    """Reference values, computed in float64 from the exported float32 weights
    and rounded to float32, so they are the models' exact outputs; onnxruntime
    must agree within TOLERANCE."""
    z = np.random.default_rng(REFERENCE_SEED).standard_normal((REFERENCE_CODES, LATENT), dtype=np.float32)
    g64 = [a.astype(np.float64) for a in g]
    images = generator_forward(g64, z.astype(np.float64)).astype(np.float32)
    desc_input = generated_to_descriptor_input(images.astype(np.float64))
    grey = desc_input[:, 0]
    emb, _, _ = descriptor_forward([a.astype(np.float64) for a in p], desc_input.astype(np.float64))
    emb = emb.astype(np.float32)

    check_close("generator, onnxruntime vs reference", run_onnx(GENERATOR_PATH, "z", z), images)
    check_close("descriptor, onnxruntime vs reference", run_onnx(DESCRIPTOR_PATH, "input", desc_input), emb)
    check_close("resize 16->24, onnxruntime Resize vs resize()", onnx_resize(images, DESC_SIZE)[:, 0], grey)

    tiny_in = np.array([[0, 1], [2, 3]], np.float64)
    tiny_out = resize(tiny_in, 4)
    check_close("resize 2->4, onnxruntime Resize vs resize()", onnx_resize(tiny_in[None, None], 4)[0, 0], tiny_out)

    return {
        "about": "Reference values for digits-generator.onnx and digits-descriptor.onnx, made by "
        "data/make_models.py. Model outputs are computed in float64 from the exported float32 "
        f"weights and rounded to float32; onnxruntime agrees within rtol = atol = {TOLERANCE}. "
        "Arrays are nested lists in NCHW order; every number is an exact float32 value.",
        "tolerance": TOLERANCE,
        "resize": {
            "formula": "Bilinear, half-pixel centres, edges clamped (ONNX Resize mode=linear, "
            "coordinate_transformation_mode=half_pixel). Along each axis, output index i "
            "samples the input at s = clamp((i + 0.5) * n_in / n_out - 0.5, 0, n_in - 1), "
            "taking (1 - f) of input[floor(s)] and f of input[min(floor(s) + 1, n_in - 1)], "
            "f = s - floor(s); rows and columns are done this way in turn (the order does not matter).",
            "example": {
                "input": tiny_in.tolist(),
                "size": [4, 4],
                "sample_positions": "s = -0.25, 0.25, 0.75, 1.25 clamped to 0, 0.25, 0.75, 1",
                "expected": tiny_out.tolist(),
            },
        },
        "generator": {
            "model": GENERATOR_PATH.name,
            "input": "z",
            "output": "image",
            "z_made_by": f"numpy.random.default_rng({REFERENCE_SEED}).standard_normal(({REFERENCE_CODES}, {LATENT}), dtype=numpy.float32)",
            "z": as_list(z),
            "image": as_list(images),
            "image_sum": as_list(images.astype(np.float64).sum(axis=(1, 2, 3))),
            "image_min": as_list(images.min(axis=(1, 2, 3))),
            "image_max": as_list(images.max(axis=(1, 2, 3))),
        },
        "descriptor": {
            "model": DESCRIPTOR_PATH.name,
            "input": "input",
            "output": "embedding",
            "input_made_by": "The generator's reference images, resized 16x16 -> 24x24 with the "
            "resize formula above, kept in float (no rounding to 8-bit pixels), grey copied to "
            "R, G and B. The descriptor's scale (x - 127.5) / 127.5 for pixels x = (g + 1) * 127.5 "
            "is the identity on the generator's g in [-1, 1], so no other step is needed.",
            "input_grey": as_list(grey),
            "embedding": as_list(emb),
            "embedding_l2_norm": as_list(np.linalg.norm(emb.astype(np.float64), axis=1)),
        },
    }


# ----------------------------------------------------------------------- main


def main():
    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target
    print(f"digits: {len(images)} images 8x8, values {images.min():.0f}..{images.max():.0f}")

    started = time.perf_counter()
    train_idx, test_idx = train_test_split(
        np.arange(len(images)), test_size=0.2, stratify=labels, random_state=DESC_SEED)
    x_all = digits_to_descriptor_input(images)
    p, desc_history = train_descriptor(x_all[train_idx], labels[train_idx])
    desc_seconds = time.perf_counter() - started
    accuracy = float(np.mean(embed(p, x_all[test_idx])[1].argmax(axis=1) == labels[test_idx]))
    # The generator's route: 8x8 -> 16x16 (its training images) -> 24x24.
    x_16 = generated_to_descriptor_input(generator_targets(images[test_idx]).reshape(-1, 1, GEN_SIZE, GEN_SIZE))
    accuracy_16 = float(np.mean(embed(p, x_16)[1].argmax(axis=1) == labels[test_idx]))
    print(f"descriptor: {DESC_EPOCHS} epochs in {desc_seconds:.0f} s, held-out accuracy "
          f"{accuracy:.4f} on {len(test_idx)} images ({accuracy_16:.4f} through 16x16)")
    for h in desc_history:
        print(f"  epoch {h['epoch']:3d}  loss {h['loss']:.4f}")

    started = time.perf_counter()
    g, gan_history = train_generator(generator_targets(images))
    gan_seconds = time.perf_counter() - started
    print(f"generator: {GAN_STEPS} steps of {GAN_BATCH} in {gan_seconds:.0f} s")
    for h in gan_history:
        print(f"  step {h['step']:6d}  d_loss {h['d_loss']:.4f}  g_loss {h['g_loss']:.4f}")

    export_generator(g, GENERATOR_PATH)
    export_descriptor(p[:6], DESCRIPTOR_PATH)
    print(f"wrote {GENERATOR_PATH.name} ({GENERATOR_PATH.stat().st_size} bytes), "
          f"{DESCRIPTOR_PATH.name} ({DESCRIPTOR_PATH.stat().st_size} bytes)")

    print(f"onnxruntime {ort.__version__} against NumPy (rtol = atol = {TOLERANCE}):")
    z = np.random.default_rng(EVAL_SEED).standard_normal((64, LATENT), dtype=np.float32)
    check_close("generator, float32 NumPy", run_onnx(GENERATOR_PATH, "z", z), generator_forward(g, z))
    x = x_all[test_idx[:64]]
    check_close("descriptor, float32 NumPy", run_onnx(DESCRIPTOR_PATH, "input", x), descriptor_forward(p, x)[0])
    ref = reference(g, p)

    collapse = collapse_report(g, p, images)
    ref["training"] = {
        "descriptor_test_accuracy": accuracy,
        "descriptor_test_images": len(test_idx),
        "descriptor_test_accuracy_via_16x16": accuracy_16,
        "descriptor_loss": desc_history,
        "gan_loss": gan_history,
        "collapse": collapse,
    }
    REFERENCE_PATH.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {REFERENCE_PATH.name}")

    print(f"collapse ({EVAL_SAMPLES} generated samples, classified by the descriptor):")
    print(f"  class histogram {collapse['class_histogram']}, {collapse['classes_seen']} of 10 classes seen")
    print(f"  top class {collapse['top_class']}: {collapse['top_class_share']:.1%} of samples "
          f"(10% if uniform)")
    print(f"  mean confidence: generated {collapse['mean_confidence_generated']:.3f}, "
          f"real {collapse['mean_confidence_real']:.3f}")
    print(f"  mean pairwise cosine of embeddings: generated "
          f"{collapse['mean_pairwise_cosine_generated']:.3f}, real {collapse['mean_pairwise_cosine_real']:.3f}")
    print(f"  share of the other samples within distance {THETA} (arccos(cos) / pi), mean / p99 / max:")
    for side in ("generated", "real"):
        share = collapse[f"neighbour_share_{side}"]
        print(f"    {side:9s} {share['mean']:.4f} / {share['p99']:.4f} / {share['max']:.4f}")
    print("  per class: share of generated, mean cosine within class generated / real")
    for c, v in collapse["per_class"].items():
        gen_cos = "-" if v["generated_cosine"] is None else f"{v['generated_cosine']:.3f}"
        print(f"    {c}: {v['generated_share']:6.1%}  {gen_cos} / {v['real_cosine']:.3f}")


if __name__ == "__main__":
    main()
