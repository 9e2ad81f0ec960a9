//! Moving vectors between the catalog and memory through Arrow.
//!
//! The `duckdb` crate's row appender cannot write list values, and reading a
//! million lists row by row would be slow; Arrow record batches do both in
//! bulk. Embeddings and latent codes are `FLOAT[]` lists in the catalog and
//! dense row-major `f32` matrices in memory.

use std::sync::Arc;

use duckdb::Connection;
use duckdb::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use duckdb::arrow::buffer::{NullBuffer, OffsetBuffer};
use duckdb::arrow::datatypes::{DataType, Field, Float32Type, Int64Type};
use duckdb::params;
use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result};

/// Rows per Arrow record batch when appending samples.
const APPEND_ROWS: usize = 8192;

/// The samples of one batch, ready to append.
pub struct SampleRows<'a> {
    pub first_sample_id: i64,
    pub model: &'a str,
    pub batch_id: i64,
    pub latents: Option<&'a Array2<f32>>,
    pub embeddings: &'a Array2<f32>,
}

impl SampleRows<'_> {
    /// Record batches in the column order of the `samples` table.
    pub fn record_batches(&self) -> Vec<RecordBatch> {
        let n = self.embeddings.nrows();
        (0..n)
            .step_by(APPEND_ROWS)
            .map(|start| {
                let end = (start + APPEND_ROWS).min(n);
                let len = end - start;
                let ids: Int64Array = (start..end)
                    .map(|i| self.first_sample_id + i as i64)
                    .collect();
                let models = StringArray::from(vec![self.model; len]);
                let batches = Int64Array::from(vec![self.batch_id; len]);
                let latents = match self.latents {
                    Some(latents) => list_of_rows(latents.slice(ndarray::s![start..end, ..])),
                    None => null_lists(len),
                };
                let embeddings = list_of_rows(self.embeddings.slice(ndarray::s![start..end, ..]));
                RecordBatch::try_from_iter(vec![
                    ("sample_id", Arc::new(ids) as ArrayRef),
                    ("model", Arc::new(models) as ArrayRef),
                    ("batch_id", Arc::new(batches) as ArrayRef),
                    ("latent", Arc::new(latents) as ArrayRef),
                    ("embedding", Arc::new(embeddings) as ArrayRef),
                ])
                .expect("columns have equal lengths")
            })
            .collect()
    }
}

/// The `anchor_vectors` rows of an audit: one per vector of `vectors`.
pub(crate) fn anchor_vector_rows(audit_id: i64, vectors: &super::AnchorVectors) -> RecordBatch {
    let n = vectors.ids.len();
    RecordBatch::try_from_iter(vec![
        (
            "audit_id",
            Arc::new(Int64Array::from(vec![audit_id; n])) as ArrayRef,
        ),
        (
            "sample_id",
            Arc::new(Int64Array::from(vectors.ids.clone())) as ArrayRef,
        ),
        (
            "embedding",
            Arc::new(list_of_rows(vectors.vectors.view())) as ArrayRef,
        ),
    ])
    .expect("columns have equal lengths")
}

fn item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, true))
}

/// A list array with one list per matrix row.
fn list_of_rows(rows: ArrayView2<'_, f32>) -> ListArray {
    let width = rows.ncols();
    let values: Float32Array = rows.iter().copied().collect();
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(width, rows.nrows()));
    ListArray::new(item_field(), offsets, Arc::new(values), None)
}

/// `len` null lists.
fn null_lists(len: usize) -> ListArray {
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(0, len));
    ListArray::new(
        item_field(),
        offsets,
        Arc::new(Float32Array::from(Vec::<f32>::new())),
        Some(NullBuffer::new_null(len)),
    )
}

/// Runs `sql` (with parameters model and an id) returning `(sample_id,
/// FLOAT[])` rows, and gathers the lists into a matrix of width `dim`.
pub(crate) fn read_vectors(
    conn: &Connection,
    sql: &str,
    model: &str,
    id: i64,
    dim: usize,
) -> Result<(Vec<i64>, Array2<f32>)> {
    let mut stmt = conn
        .prepare(sql)
        .map_err(|e| Error::catalog("prepare vector read", e))?;
    tracing::trace!("vectors: prepared");
    let batches: Vec<RecordBatch> = stmt
        .query_arrow(params![model, id])
        .map_err(|e| Error::catalog("read vectors", e))?
        .collect();
    tracing::trace!("vectors: fetched");
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut ids = Vec::with_capacity(total);
    let mut data = Vec::with_capacity(total * dim);
    for batch in &batches {
        let id_column = batch.column(0).as_primitive::<Int64Type>();
        let lists = batch.column(1).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let sample_id = id_column.value(row);
            if lists.is_null(row) {
                return Err(Error::InvalidArgument(format!(
                    "sample {sample_id} of model {model:?} has no stored vector in this column \
                     (imported without latent codes?)"
                )));
            }
            let values = lists.value(row);
            let values = values.as_primitive::<Float32Type>();
            if values.len() != dim {
                return Err(Error::Dimension {
                    what: format!("stored vector of sample {sample_id}"),
                    expected: dim,
                    got: values.len(),
                });
            }
            ids.push(sample_id);
            data.extend_from_slice(values.values());
        }
    }
    let matrix = Array2::from_shape_vec((ids.len(), dim), data).expect("sizes checked per row");
    Ok((ids, matrix))
}

/// Runs a query and converts the result to JSON: numbers, booleans and
/// strings as themselves, lists as arrays, anything else (timestamps, JSON
/// columns, decimals...) as DuckDB's text form through Arrow's formatter.
pub fn query_to_json(
    conn: &Connection,
    sql: &str,
) -> Result<(Vec<String>, Vec<Vec<serde_json::Value>>)> {
    let mut stmt = conn
        .prepare(sql)
        .map_err(|e| Error::catalog("prepare query", e))?;
    let arrow = stmt
        .query_arrow([])
        .map_err(|e| Error::catalog("run query", e))?;
    let schema = arrow.get_schema();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    for batch in arrow {
        let converted: Vec<Vec<serde_json::Value>> = batch
            .columns()
            .iter()
            .map(|column| column_to_json(column.as_ref()))
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(converted.iter().map(|column| column[row].clone()).collect());
        }
    }
    Ok((columns, rows))
}

fn column_to_json(column: &dyn Array) -> Vec<serde_json::Value> {
    use duckdb::arrow::datatypes::*;
    use serde_json::Value;
    let n = column.len();
    let number = |x: f64| {
        serde_json::Number::from_f64(x).map_or_else(|| Value::String(x.to_string()), Value::Number)
    };
    let mut out: Vec<Value> = match column.data_type() {
        DataType::Boolean => {
            let a = column.as_boolean();
            (0..n).map(|i| Value::Bool(a.value(i))).collect()
        }
        DataType::Int8 => ints(column.as_primitive::<Int8Type>()),
        DataType::Int16 => ints(column.as_primitive::<Int16Type>()),
        DataType::Int32 => ints(column.as_primitive::<Int32Type>()),
        DataType::Int64 => ints(column.as_primitive::<Int64Type>()),
        DataType::UInt8 => ints(column.as_primitive::<UInt8Type>()),
        DataType::UInt16 => ints(column.as_primitive::<UInt16Type>()),
        DataType::UInt32 => ints(column.as_primitive::<UInt32Type>()),
        DataType::UInt64 => ints(column.as_primitive::<UInt64Type>()),
        DataType::Float32 => {
            let a = column.as_primitive::<Float32Type>();
            (0..n).map(|i| number(f64::from(a.value(i)))).collect()
        }
        DataType::Float64 => {
            let a = column.as_primitive::<Float64Type>();
            (0..n).map(|i| number(a.value(i))).collect()
        }
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            (0..n)
                .map(|i| Value::String(a.value(i).to_string()))
                .collect()
        }
        DataType::LargeUtf8 => {
            let a = column.as_string::<i64>();
            (0..n)
                .map(|i| Value::String(a.value(i).to_string()))
                .collect()
        }
        DataType::List(_) => {
            let a = column.as_list::<i32>();
            (0..n)
                .map(|i| Value::Array(column_to_json(a.value(i).as_ref())))
                .collect()
        }
        _ => {
            let options = duckdb::arrow::util::display::FormatOptions::default();
            match duckdb::arrow::util::display::ArrayFormatter::try_new(column, &options) {
                Ok(formatter) => (0..n)
                    .map(|i| Value::String(formatter.value(i).to_string()))
                    .collect(),
                Err(_) => vec![Value::String(format!("<{}>", column.data_type())); n],
            }
        }
    };
    for (i, value) in out.iter_mut().enumerate() {
        if column.is_null(i) {
            *value = Value::Null;
        }
    }
    out
}

fn ints<T>(a: &duckdb::arrow::array::PrimitiveArray<T>) -> Vec<serde_json::Value>
where
    T: duckdb::arrow::datatypes::ArrowPrimitiveType,
    T::Native: Into<serde_json::Number>,
{
    (0..a.len())
        .map(|i| serde_json::Value::Number(a.value(i).into()))
        .collect()
}
