#!/usr/bin/env python3
"""Side-by-side comparison of modeaudit's search paths with NumPy, faiss and hnswlib.

What an audit costs is dominated by one job: for each of A anchors, count the
samples within the radius r (dot product >= cos(pi * r)) and sum the
similarity kernel over them, against all N samples. modeaudit does it two
ways, an exact blocked matrix product (`--search exact`) and a radius search
on an HNSW graph (`--search hnsw`), and picks one with `--search auto`. This
script puts both next to the obvious alternatives, on the same embeddings and
the same anchors, in one run:

- a plain NumPy implementation of the same formulas (float32 BLAS product in
  blocks of samples, threshold, the anchor's own row left out, similarity in
  float64 on the survivors): what a user would write instead of the tool;
- faiss's exact range search (IndexFlatIP), the standard library for it;
- for the index build, hnswlib with the same M and ef_construction as the
  tool's index (hnsw_rs), both as points per second.

It also checks correctness: NumPy and faiss must reproduce the tool's exact
counts (up to a handful of pairs at the float32 boundary), and the HNSW counts
are scored by their recall against the exact ones and by whether they find the
same worst-case anchor. A neighbour lookup and `modes --top 5` are timed too.

Counting times are what matter: for the tool they are `search_s` from its JSON
(counting only; its total `elapsed_s`, with reading the catalog and storing
the audit, is shown beside it), for NumPy and faiss only the counting is timed,
not the loading. Machines are shared and noisy, so the ratios of timings taken
side by side in one run are the numbers to read, not the absolute seconds.

The script installs its Python dependencies (benches/requirements-compare.txt)
into benches/.venv and re-executes itself there. The NumPy timing runs in a
child process without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some
machines set for old OpenBLAS builds and which slow a current NumPy; nothing
else sees that change (faiss keeps the environment as it is).

    python3 benches/compare.py --sizes 10000
"""

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".venv"
REQUIREMENTS = BENCH_DIR / "requirements-compare.txt"
# Installed on a best-effort basis: its comparison is skipped without it.
OPTIONAL_PACKAGES = ("hnswlib",)
# The variables that pin OpenBLAS to an old kernel; unset for NumPy only.
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MODEL = "bench"
GENERATOR_SEED = 1
AUDIT_SEED = 0
LOOKUP_RUNS = 3
# Rows of samples per NumPy product: anchors x 4096 floats stay small.
NUMPY_BLOCK = 4096
# Slack of the float32 screen before the float64 similarity (as the tool).
SCREEN_SLACK = 1e-4


def running_in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def bootstrap_venv() -> None:
    """Creates benches/.venv, installs the requirements, re-executes there."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    stamp = VENV / ".compare-requirements"
    wanted = REQUIREMENTS.read_text()
    if not stamp.exists() or stamp.read_text() != wanted:
        pins = [line.strip() for line in wanted.splitlines() if line.strip() and not line.startswith("#")]
        optional = [p for p in pins if p.split("==")[0] in OPTIONAL_PACKAGES]
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        print(f"installing {', '.join(pins)} into {VENV}", file=sys.stderr)
        subprocess.run(pip + [p for p in pins if p not in optional], check=True)
        for pin in optional:
            if subprocess.run(pip + [pin]).returncode != 0:
                print(f"note: {pin} did not install; its comparison will be skipped", file=sys.stderr)
        stamp.write_text(wanted)
    os.execv(python, [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


if __name__ == "__main__" and not running_in_venv():
    bootstrap_venv()

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import threadpoolctl  # noqa: E402

try:
    import hnswlib  # noqa: E402
except ImportError:
    hnswlib = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the tool


class ToolError(RuntimeError):
    pass


class Tool:
    """Runs the modeaudit binary on one catalog and parses its JSON."""

    def __init__(self, binary: Path, catalog: Path):
        self.binary = binary
        self.catalog = catalog

    def run(self, *args: str) -> dict:
        command = [str(self.binary), *args, "--catalog", str(self.catalog), "--json", "--quiet"]
        log("  $ " + " ".join(command))
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolError(
                f"{' '.join(command)} exited with {proc.returncode}\n"
                f"stderr:\n{proc.stderr}\nstdout:\n{proc.stdout}"
            )
        return json.loads(proc.stdout)


def anchor_table(audit: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The audit's anchors as (sample ids, counts, similarity sums), by id."""
    anchors = sorted(audit["anchors"], key=lambda a: a["sample_id"])
    ids = np.array([a["sample_id"] for a in anchors], dtype=np.int64)
    counts = np.array([a["neighbors"] for a in anchors], dtype=np.int64)
    sums = np.array([a["similarity_sum"] for a in anchors], dtype=np.float64)
    return ids, counts, sums


# ---------------------------------------------------------------- loading


def load_embeddings(catalog: Path, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Sample ids and an (n, dim) float32 matrix, ordered by sample id.

    Arrow batches are flattened without copying (a FLOAT[] column is one
    float buffer plus offsets) and concatenated once; going through NumPy
    object arrays instead costs about twice as long.
    """
    query = "SELECT sample_id, embedding FROM samples WHERE model = $model ORDER BY sample_id"
    with duckdb.connect(str(catalog), read_only=True) as con:
        ids, values = [], []
        for batch in con.sql(query, params={"model": model}).to_arrow_reader():
            ids.append(batch.column(0).to_numpy())
            values.append(batch.column(1).flatten().to_numpy())
    ids = np.concatenate(ids)
    flat = np.concatenate(values)
    if len(ids) == 0 or flat.size % len(ids):
        raise ValueError(f"{catalog}: embeddings of model {model!r} are not all of one length")
    return ids, flat.reshape(len(ids), -1)


# ---------------------------------------------------------------- NumPy


def blas_info(library_hint: str) -> list[dict]:
    """threadpoolctl's view of the BLAS libraries whose path has the hint."""
    keys = ("internal_api", "architecture", "version", "num_threads", "threading_layer")
    return [
        {k: lib.get(k) for k in keys}
        for lib in threadpoolctl.threadpool_info()
        if lib["user_api"] == "blas" and library_hint in lib["filepath"]
    ]


def numpy_sums(
    embeddings: np.ndarray, rows: np.ndarray, theta: float, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour counts and similarity sums of the anchor rows, the plain way.

    Blocks of samples are multiplied with the anchors in float32; products
    below the screen cannot matter and are dropped; the anchor's own row is
    dropped by position; the survivors' products are promoted to float64 for
    the radius test and the similarity kernel.
    """
    cos_radius = np.cos(np.pi * radius)
    cos_theta = np.cos(np.pi * theta)
    screen = np.float32(min(cos_radius, cos_theta) - SCREEN_SLACK)
    anchors = embeddings[rows]
    counts = np.zeros(len(rows), dtype=np.int64)
    sums = np.zeros(len(rows), dtype=np.float64)
    for start in range(0, len(embeddings), NUMPY_BLOCK):
        product = anchors @ embeddings[start : start + NUMPY_BLOCK].T
        q, j = np.nonzero(product >= screen)
        keep = start + j != rows[q]
        q, dot = q[keep], product[q[keep], j[keep]].astype(np.float64)
        counts += np.bincount(q[dot >= cos_radius], minlength=len(rows))
        distance = np.arccos(np.clip(dot, -1.0, 1.0)) / np.pi
        similarity = np.where(dot > cos_theta, np.expm1(np.maximum(0.0, theta - distance)), 0.0)
        sums += np.bincount(q, weights=similarity, minlength=len(rows))
    return counts, sums / np.expm1(theta)


def numpy_worker(job_path: Path) -> None:
    """Child process: times numpy_sums and prints the result as JSON."""
    job = json.loads(job_path.read_text())
    embeddings = np.load(job["embeddings"])
    rows = np.load(job["rows"])
    started = time.perf_counter()
    counts, sums = numpy_sums(embeddings, rows, job["theta"], job["radius"])
    seconds = time.perf_counter() - started
    json.dump(
        {"search_s": seconds, "counts": counts.tolist(), "sums": sums.tolist(), "blas": blas_info("numpy")},
        sys.stdout,
    )


def run_numpy(workdir: Path, embeddings: np.ndarray, rows: np.ndarray, theta: float, radius: float) -> dict:
    """Runs numpy_worker in a child without the OpenBLAS pins."""
    job = {
        "embeddings": str(workdir / "embeddings.npy"),
        "rows": str(workdir / "anchor_rows.npy"),
        "theta": theta,
        "radius": radius,
    }
    np.save(job["embeddings"], embeddings)
    np.save(job["rows"], rows)
    job_path = workdir / "numpy-job.json"
    job_path.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_PINS}
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--numpy-worker", str(job_path)],
            env=env, capture_output=True, text=True, check=True,
        )
    finally:
        for path in (job["embeddings"], job["rows"], job_path):
            Path(path).unlink(missing_ok=True)
    result = json.loads(proc.stdout)
    result["counts"] = np.array(result["counts"], dtype=np.int64)
    result["sums"] = np.array(result["sums"], dtype=np.float64)
    return result


# ---------------------------------------------------------------- faiss


def run_faiss(embeddings: np.ndarray, rows: np.ndarray, radius: float) -> dict:
    """Exact range search with faiss.IndexFlatIP; times the search only.

    faiss returns the samples whose inner product is strictly above the
    threshold (the tool counts >=; only exact ties differ). Each anchor is in
    the index and finds itself: that hit is removed by label (its row), not
    by subtracting one, so a duplicate of the anchor still counts.
    """
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    anchors = np.ascontiguousarray(embeddings[rows])
    started = time.perf_counter()
    lims, _, labels = index.range_search(anchors, float(np.cos(np.pi * radius)))
    seconds = time.perf_counter() - started
    per_anchor = np.diff(lims.astype(np.int64))
    owner = np.repeat(np.arange(len(rows)), per_anchor)
    own_hits = np.bincount(owner[labels == rows[owner]], minlength=len(rows))
    return {
        "search_s": seconds,
        "counts": (per_anchor - own_hits).astype(np.int64),
        "threads": faiss.omp_get_max_threads(),
        "blas": blas_info("faiss"),
    }


# ---------------------------------------------------------------- hnswlib


def run_hnswlib(embeddings: np.ndarray, m: int, ef_construction: int) -> dict:
    threads = os.cpu_count() or 1
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=embeddings.shape[1])
    index.init_index(max_elements=len(embeddings), M=m, ef_construction=ef_construction)
    index.add_items(embeddings, np.arange(len(embeddings)), num_threads=threads)
    seconds = time.perf_counter() - started
    return {"elapsed_s": seconds, "points_per_s": len(embeddings) / seconds, "threads": threads}


# ---------------------------------------------------------------- one size


def compare_counts(reference: np.ndarray, counts: np.ndarray) -> dict:
    """Mismatching anchors and the worst case, against the tool's exact counts."""
    differ = reference != counts
    return {
        "mismatches": int(differ.sum()),
        "max_abs_diff": int(np.abs(reference - counts).max(initial=0)),
        # argmax takes the first maximum: rows are in sample-id order, so
        # ties go to the smallest sample id, as in the tool.
        "same_worst": bool(np.argmax(reference) == np.argmax(counts)),
    }


def reusable(tool: "Tool", n: int) -> bool:
    """Whether the catalog already holds the benchmark's model with n samples."""
    if not tool.catalog.exists():
        return False
    try:
        models = tool.run("models")["models"]
    except ToolError:
        return False
    return any(m["model"] == MODEL and m["n_samples"] == n for m in models)


def run_size(args: argparse.Namespace, binary: Path, n: int) -> dict:
    workdir = args.workdir / f"n{n}"
    tool = Tool(binary, workdir / "catalog.duckdb")
    n_anchors = min(args.anchors, n)
    reuse = args.reuse and reusable(tool, n)
    sampled = None
    if reuse:
        log(f"[n={n:,}] reusing {tool.catalog} (no sampling; the index is rebuilt only if stale)")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        log(f"[n={n:,}] sampling")
        sampled = tool.run(
            "sample", "--model", MODEL, "--generator", f"synthetic:dim={args.dim}",
            "--n", str(n), "--seed", str(GENERATOR_SEED),
        )

    log(f"[n={n:,}] loading embeddings with duckdb")
    started = time.perf_counter()
    ids, embeddings = load_embeddings(tool.catalog, MODEL)
    load_s = time.perf_counter() - started

    audit = ("audit", "--model", MODEL, "--anchors", str(n_anchors), "--seed", str(AUDIT_SEED), "--search")
    exact = tool.run(*audit, "exact")
    # With --reuse an index that is current is only loaded, and its build
    # rate is not measured in this run.
    built = tool.run(
        "index", "--model", MODEL, "--index-threads", str(args.index_threads),
        *(() if reuse else ("--rebuild",)),
    )
    build_measured = built["action"] != "loaded"
    hnsw = tool.run(*audit, "hnsw")
    auto = tool.run(*audit, "auto")
    theta, radius = exact["theta"], exact["radius"]

    anchor_ids, exact_counts, exact_sums = anchor_table(exact)
    rows = np.searchsorted(ids, anchor_ids)
    if not np.array_equal(ids[rows], anchor_ids):
        raise ToolError(f"the exact audit's anchors are not all samples of {MODEL}")
    hnsw_ids, hnsw_counts, _ = anchor_table(hnsw)
    if not np.array_equal(hnsw_ids, anchor_ids):
        raise ToolError("the hnsw audit drew other anchors than the exact audit with the same seed")

    log(f"[n={n:,}] NumPy (child process without {' and '.join(OPENBLAS_PINS)})")
    numpy = run_numpy(workdir, embeddings, rows, theta, radius)
    numpy_check = compare_counts(exact_counts, numpy["counts"])
    scale = np.maximum(np.abs(exact_sums), 1e-300)
    numpy_check["max_rel_sum_diff"] = float(np.max(np.abs(numpy["sums"] - exact_sums) / scale))

    faiss_result = None
    if not args.skip_faiss:
        log(f"[n={n:,}] faiss range search")
        faiss_result = run_faiss(embeddings, rows, radius)
        faiss_result.update(compare_counts(exact_counts, faiss_result.pop("counts")))

    hnswlib_result = None
    if not args.skip_hnswlib:
        log(f"[n={n:,}] hnswlib build")
        hnswlib_result = run_hnswlib(embeddings, built["params"]["m"], built["params"]["ef_construction"])

    lookup_id = str(exact["worst"]["sample_id"])
    lookups = [tool.run("neighbors", "--model", MODEL, "--id", lookup_id, "--k", "10") for _ in range(LOOKUP_RUNS)]
    modes = tool.run("modes", "--model", MODEL, "--top", "5")

    total_exact = int(exact_counts.sum())
    recall = float(np.minimum(hnsw_counts, exact_counts).sum() / total_exact) if total_exact else float("nan")
    return {
        "n": n,
        "dim": embeddings.shape[1],
        "anchors": n_anchors,
        "theta": theta,
        "radius": radius,
        "sample": {k: sampled[k] for k in ("elapsed_s", "samples_per_s")} if sampled else None,
        "load_s": load_s,
        "tool_exact": {
            "search_s": exact["search_s"],
            "elapsed_s": exact["elapsed_s"],
            "worst_sample_id": exact["worst"]["sample_id"],
            "worst_neighbors": exact["worst"]["neighbors"],
            "mccs_mean": exact["population"]["mean"],
        },
        "tool_hnsw": {
            "search_s": hnsw["search_s"],
            "elapsed_s": hnsw["elapsed_s"],
            "index_s": hnsw["index_s"],
            "recall": recall,
            "mismatches": int((hnsw_counts != exact_counts).sum()),
            "same_worst": hnsw["worst"]["sample_id"] == exact["worst"]["sample_id"],
            "worst_sample_id": hnsw["worst"]["sample_id"],
            "mccs_mean": hnsw["population"]["mean"],
        },
        "tool_auto": {
            "search": auto["search"],
            "reason": auto["search_reason"],
            "search_s": auto["search_s"],
            "elapsed_s": auto["elapsed_s"],
        },
        "numpy": {"search_s": numpy["search_s"], "blas": numpy["blas"], **numpy_check},
        "faiss": faiss_result,
        "build": {
            "tool": {
                "points": built["points"],
                "elapsed_s": built["elapsed_s"],
                "points_per_s": built["points"] / built["elapsed_s"] if build_measured else None,
                "params": built["params"],
            },
            "hnswlib": hnswlib_result,
        },
        "lookup": {
            "sample_id": int(lookup_id),
            "query_ms": [r["query_ms"] for r in lookups],
            "query_ms_median": statistics.median(r["query_ms"] for r in lookups),
            "open_ms_median": statistics.median(r["open_ms"] for r in lookups),
            "index_points": lookups[0]["index_points"],
        },
        "modes": {
            "elapsed_s": modes["elapsed_s"],
            "search_s": modes["search_s"],
            "index_s": modes["index_s"],
            "top": [{"sample_id": a["sample_id"], "neighbors": a["neighbors"]} for a in modes["anchors"]],
        },
    }


# ---------------------------------------------------------------- report


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def describe_blas(libraries: list[dict]) -> str:
    return ", ".join(
        f"{lib['internal_api']} {lib['version']} {lib['architecture']} x{lib['num_threads']}" for lib in libraries
    ) or "unknown"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def print_size(r: dict) -> None:
    e, h, a, npy, fa = r["tool_exact"], r["tool_hnsw"], r["tool_auto"], r["numpy"], r["faiss"]
    print()
    print(
        f"=== {r['n']:,} samples, dim {r['dim']}, {r['anchors']} anchors (seed {AUDIT_SEED}), "
        f"radius {r['radius']}, theta {r['theta']} ==="
    )
    sampling = (
        f"sampling: {r['sample']['elapsed_s']:.2f} s ({r['sample']['samples_per_s']:,.0f} samples/s)"
        if r["sample"] else "sampling: reused catalog (--reuse)"
    )
    print(f"{sampling}; Python duckdb -> NumPy load of the embeddings: {r['load_s']:.2f} s")
    print()
    rows = [
        ["tool exact", seconds(e["search_s"]), seconds(e["elapsed_s"]), "reference",
         f"worst {e['worst_sample_id']} ({e['worst_neighbors']} nb)"],
        ["tool hnsw", seconds(h["search_s"]), seconds(h["elapsed_s"]),
         f"{h['mismatches']} differ, recall {h['recall']:.4f}",
         f"same worst: {'yes' if h['same_worst'] else 'NO (' + str(h['worst_sample_id']) + ')'}; "
         f"index load {seconds(h['index_s'])} s"],
        [f"tool auto -> {a['search']}", seconds(a["search_s"]), seconds(a["elapsed_s"]), "", a["reason"]],
        ["numpy f32 blocks", seconds(npy["search_s"]), "", f"{npy['mismatches']} differ (max {npy['max_abs_diff']})",
         f"same worst: {'yes' if npy['same_worst'] else 'NO'}; sums rel. diff <= {npy['max_rel_sum_diff']:.1e}; "
         f"BLAS {describe_blas(npy['blas'])}"],
    ]
    if fa:
        rows.append(["faiss IndexFlatIP range", seconds(fa["search_s"]), "",
                     f"{fa['mismatches']} differ (max {fa['max_abs_diff']})",
                     f"same worst: {'yes' if fa['same_worst'] else 'NO'}; BLAS {describe_blas(fa['blas'])}"])
    print_table(["counting", "count s", "total s", "counts vs tool exact", "notes"], rows)
    print()
    b = r["build"]
    params = b["tool"]["params"]
    if b["tool"]["points_per_s"] is None:
        build_rows = [["tool index (hnsw_rs)", "-", "-", "reused index (--reuse): build not measured in this run"]]
    else:
        threads = params.get("build_threads", 1)
        build_rows = [["tool index --rebuild (hnsw_rs)", f"{b['tool']['points_per_s']:,.0f}", seconds(b["tool"]["elapsed_s"]),
                       f"--index-threads {threads}; includes reading the embeddings from the catalog"]]
    if b["hnswlib"]:
        build_rows.append(["hnswlib (space ip)", f"{b['hnswlib']['points_per_s']:,.0f}", seconds(b["hnswlib"]["elapsed_s"]),
                           f"{b['hnswlib']['threads']} threads, embeddings already in memory"])
    print(f"index build, M {params['m']}, ef_construction {params['ef_construction']}:")
    print_table(["builder", "points/s", "seconds", "notes"], build_rows)
    print()
    lk, md = r["lookup"], r["modes"]
    print(
        f"neighbors --id {lk['sample_id']} --k 10: query {lk['query_ms_median']:.2f} ms "
        f"(median of {LOOKUP_RUNS}: {', '.join(f'{q:.2f}' for q in lk['query_ms'])}), "
        f"opening the index {lk['open_ms_median']:.1f} ms"
    )
    top = ", ".join(f"{m['sample_id']} ({m['neighbors']} nb)" for m in md["top"])
    print(f"modes --top 5: {md['elapsed_s']:.2f} s total (index {seconds(md['index_s'])} s, search {md['search_s']:.2f} s): {top}")
    print()
    print("ratios of counting times (below 1: the tool is faster):")
    print(f"  tool exact / numpy        {ratio(e['search_s'], npy['search_s'])}")
    if fa:
        print(f"  tool exact / faiss        {ratio(e['search_s'], fa['search_s'])}")
    print(f"  tool hnsw / tool exact    {ratio(h['search_s'], e['search_s'])}")
    if b["hnswlib"] and b["tool"]["points_per_s"] is not None:
        print("build rate (above 1: the tool builds faster):")
        print(f"  tool / hnswlib            {ratio(b['tool']['points_per_s'], b['hnswlib']['points_per_s'])}")


def print_growth(results: list[dict]) -> None:
    print()
    print("=== growth of the counting time with the number of samples ===")
    rows = []
    previous = None
    for r in results:
        e, h = r["tool_exact"]["search_s"], r["tool_hnsw"]["search_s"]
        pairs = r["anchors"] * r["n"]
        growth = ["-", "-", "-"]
        if previous:
            growth = [
                f"x{r['n'] / previous['n']:.1f}",
                ratio(e, previous["tool_exact"]["search_s"]),
                ratio(h, previous["tool_hnsw"]["search_s"]),
            ]
        rows.append([f"{r['n']:,}", seconds(e), f"{e / pairs * 1e9:.2f}", seconds(h), seconds(r["numpy"]["search_s"]), *growth])
        previous = r
    print_table(["samples", "exact s", "exact ns/pair", "hnsw s", "numpy s", "samples", "exact", "hnsw"], rows)
    print("(the last three columns: growth from the previous size; exact should grow like the samples,")
    print(" hnsw with the anchors' neighbourhoods, which grow with the samples too at a fixed radius)")


def print_environment(binary: Path) -> None:
    packages = ", ".join(
        f"{name} {metadata.version(name) if importlib.util.find_spec(module) else 'missing'}"
        for name, module in (("numpy", "numpy"), ("duckdb", "duckdb"), ("faiss-cpu", "faiss"), ("hnswlib", "hnswlib"))
    )
    pins = ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in OPENBLAS_PINS)
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"{version} ({binary}); {os.cpu_count()} cores; Python {sys.version.split()[0]}; {packages}")
    print(f"here {pins}; the NumPy child runs with both unset")


# ---------------------------------------------------------------- main


def default_binary() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "modeaudit-target"))
    return Path(target) / "release" / "modeaudit"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, default=default_binary(), help="the modeaudit release binary")
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated sample counts")
    parser.add_argument("--anchors", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512, help="embedding size of the synthetic generator")
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / "results" / "compare", help="catalogs go here")
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--skip-hnswlib", action="store_true")
    parser.add_argument(
        "--reuse", action="store_true",
        help="reuse a size's catalog and current index from an earlier run instead of sampling and building again",
    )
    parser.add_argument(
        "--index-threads", type=int, default=0,
        help="threads building the tool's index (0: all cores, as hnswlib gets; 1: the default, reproducible serial build)",
    )
    parser.add_argument("--json-out", type=Path, help="also write every number here")
    parser.add_argument("--numpy-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    return args


def main() -> int:
    args = parse_args()
    if args.numpy_worker:
        numpy_worker(args.numpy_worker)
        return 0
    if not args.bin.is_file():
        print(f"error: no modeaudit binary at {args.bin} (build it with `make build`, or pass --bin)", file=sys.stderr)
        return 2
    if hnswlib is None and not args.skip_hnswlib:
        print("note: hnswlib is not installed in benches/.venv; skipping the hnswlib build comparison")
        args.skip_hnswlib = True
    print_environment(args.bin)
    results = []
    try:
        for n in args.sizes:
            results.append(run_size(args, args.bin, n))
            print_size(results[-1])
    except ToolError as e:
        print(f"error: modeaudit failed:\n{e}", file=sys.stderr)
        return 1
    finally:
        if args.json_out and results:
            args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    if len(results) > 1:
        print_growth(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
