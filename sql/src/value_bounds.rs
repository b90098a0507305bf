//! Bounds on the values SQL functions make. A function such as
//! `repeat('x', 1e11)` allocates in proportion to an argument, and one that
//! joins its inputs (`concat` of many arguments, `||`) multiplies them on
//! each level of a chain of subqueries; DataFusion's memory pool sees
//! neither. So every scalar function of a plan is wrapped in
//! [`BoundedFunction`], and every string `||` becomes [`ConcatOperator`]:
//! a function whose output is sized by an argument or is the join of its
//! arguments is checked from them before it runs, every output after,
//! against [`MAX_VALUE_BYTES`] a value and [`MAX_CALL_BYTES`] a call. Any
//! other function makes at most a small multiple of inputs already
//! checked, so no chain escapes the bound.

use std::any::Any;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::concat_elements::concat_elements_dyn;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::FieldRef;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::SqlError;

/// Most bytes of one value a SQL function makes (a list counts 8 bytes an
/// element). A constant is copied to every row of a batch (8,192 rows), so
/// this also bounds what one folded constant can cost: 512 MiB.
pub const MAX_VALUE_BYTES: u64 = 64 << 10;

/// Most bytes all the values of one function call (one batch) add up to.
pub const MAX_CALL_BYTES: u64 = 64 << 20;

/// Functions whose output size an argument chooses, and how to bound it
/// from the arguments before running them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SizedBy {
    /// `repeat(s, n)`: `n` copies of `s`.
    Repeat,
    /// `lpad`/`rpad(s, n, …)`: `n` characters of at most 4 bytes.
    Pad,
    /// `regexp_replace(s, pattern, replacement, …)`: every match (at most
    /// one a byte, plus one) replaced by the replacement, whose references
    /// to captures each copy at most `s`.
    RegexpReplace,
    /// `replace(s, from, to)`: at most one `to` a byte of `s`, plus one.
    Replace,
    /// `concat(…)`, `overlay(s placing t …)`: at most all the arguments.
    Joined,
    /// `concat_ws(separator, …)`: the arguments and a separator each.
    JoinedWithSeparator,
}

impl SizedBy {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "repeat" => Self::Repeat,
            "lpad" | "rpad" => Self::Pad,
            "regexp_replace" => Self::RegexpReplace,
            "replace" => Self::Replace,
            "concat" | "overlay" => Self::Joined,
            "concat_ws" => Self::JoinedWithSeparator,
            _ => return None,
        })
    }

    /// An upper bound of each row's output size.
    fn row_bounds(self, args: &[ColumnarValue], rows: usize) -> Result<Vec<u64>> {
        let arg = |i: usize| {
            args.get(i)
                .ok_or_else(|| DataFusionError::Plan(format!("argument {} is missing", i + 1)))
        };
        let counts = |i: usize| integers(arg(i)?, rows);
        Ok(match self {
            Self::Repeat => multiply(&value_sizes_of(arg(0)?, rows)?, &counts(1)?),
            Self::Pad => multiply(&vec![4; rows], &counts(1)?),
            Self::RegexpReplace => {
                let text = value_sizes_of(arg(0)?, rows)?;
                let replacement = value_sizes_of(arg(2)?, rows)?;
                text.iter()
                    .zip(&replacement)
                    .map(|(&s, &r)| s.saturating_add((2 * s + 1).saturating_mul(r)))
                    .collect()
            }
            Self::Replace => {
                let text = value_sizes_of(arg(0)?, rows)?;
                let to = value_sizes_of(arg(2)?, rows)?;
                text.iter()
                    .zip(&to)
                    .map(|(&s, &t)| s.saturating_add((s + 1).saturating_mul(t)))
                    .collect()
            }
            Self::Joined => summed(args, rows)?,
            Self::JoinedWithSeparator => {
                let separators = (args.len() as u64).saturating_sub(1);
                let separator = value_sizes_of(arg(0)?, rows)?;
                let joined = summed(args, rows)?;
                joined
                    .iter()
                    .zip(&separator)
                    .map(|(&j, &s)| j.saturating_add(s.saturating_mul(separators)))
                    .collect()
            }
        })
    }
}

/// `size × count` a row (a count below 0 makes nothing; an empty value
/// still costs the list or string header, so counts as 1).
fn multiply(sizes: &[u64], counts: &[i64]) -> Vec<u64> {
    sizes
        .iter()
        .zip(counts)
        .map(|(&size, &count)| size.max(1).saturating_mul(count.max(0) as u64))
        .collect()
}

fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.saturating_add(*y)).collect()
}

/// Each row's arguments' sizes, added up.
fn summed(args: &[ColumnarValue], rows: usize) -> Result<Vec<u64>> {
    let mut total = vec![0u64; rows];
    for arg in args {
        total = add(&total, &value_sizes_of(arg, rows)?);
    }
    Ok(total)
}

/// An argument's values as integers (nulls as 0), one per row.
fn integers(arg: &ColumnarValue, rows: usize) -> Result<Vec<i64>> {
    let array = cast(&arg.to_array(rows)?, &DataType::Int64)?;
    let array = array.as_primitive::<Int64Type>();
    Ok((0..rows)
        .map(|row| {
            if array.is_null(row) {
                0
            } else {
                array.value(row)
            }
        })
        .collect())
}

fn value_sizes_of(arg: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    value_sizes(&arg.to_array(rows)?)
}

/// Each value's size: bytes of a string or binary value, 8 bytes an element
/// of a list, 8 bytes of anything else (nulls 0).
fn value_sizes(array: &ArrayRef) -> Result<Vec<u64>> {
    let variable = matches!(
        array.data_type(),
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    );
    let listed = matches!(
        array.data_type(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    );
    if !variable && !listed {
        return Ok(vec![8; array.len()]);
    }
    let unit = if listed { 8 } else { 1 };
    let lengths = cast(&length(array.as_ref())?, &DataType::Int64)?;
    let lengths = lengths.as_primitive::<Int64Type>();
    Ok((0..array.len())
        .map(|row| {
            let length = if lengths.is_null(row) {
                0
            } else {
                lengths.value(row)
            };
            (length.max(0) as u64).saturating_mul(unit)
        })
        .collect())
}

/// Refuses sizes past a bound, naming `function`.
fn check(function: &str, sizes: &[u64], made: &str) -> Result<()> {
    if let Some(&largest) = sizes.iter().max() {
        if largest > MAX_VALUE_BYTES {
            return Err(refused(format!(
                "{function} {made} a value of {largest} bytes; a SQL function makes at most {MAX_VALUE_BYTES} bytes a value"
            )));
        }
    }
    let total = sizes
        .iter()
        .fold(0u64, |sum, &size| sum.saturating_add(size));
    if total > MAX_CALL_BYTES {
        return Err(refused(format!(
            "{function} {made} {total} bytes for one batch of rows; a SQL function makes at most {MAX_CALL_BYTES} bytes a batch"
        )));
    }
    Ok(())
}

fn refused(limit: String) -> DataFusionError {
    DataFusionError::External(Box::new(SqlError::ResourceExhausted { limit }))
}

fn check_output(function: &str, output: &ColumnarValue) -> Result<()> {
    let sizes = match output {
        ColumnarValue::Array(array) => value_sizes(array)?,
        ColumnarValue::Scalar(scalar) => value_sizes(&scalar.to_array()?)?,
    };
    check(function, &sizes, "made")
}

/// A DataFusion scalar function with its values bounded; everything else
/// (name, signature, types, ordering, documentation) is the inner
/// function's, so plans and column names do not change.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BoundedFunction {
    inner: Arc<ScalarUDF>,
    sized_by: Option<SizedBy>,
}

impl BoundedFunction {
    fn wrap(inner: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
        let sized_by = SizedBy::of(inner.name());
        Arc::new(ScalarUDF::new_from_impl(Self { inner, sized_by }))
    }
}

impl ScalarUDFImpl for BoundedFunction {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.inner.name();
        if let Some(sized_by) = self.sized_by {
            let bounds = sized_by.row_bounds(&args.args, args.number_rows)?;
            check(name, &bounds, "would make")?;
        }
        let output = self.inner.invoke_with_args(args)?;
        check_output(name, &output)?;
        Ok(output)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Self {
            inner: Arc::new(updated),
            sized_by: self.sized_by,
        }))
    }

    /// The inner function's simplification (some functions, such as
    /// `arrow_cast`, only work simplified), with every function it makes
    /// bounded in turn.
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(match self.inner.simplify(args, info)? {
            ExprSimplifyResult::Simplified(expr) => {
                ExprSimplifyResult::Simplified(expr.transform_up(bound_expression)?.data)
            }
            original @ ExprSimplifyResult::Original(_) => original,
        })
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// `a || b` on strings, as DataFusion computes it (null if either is
/// null), checked before it runs: its output is the sum of its inputs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConcatOperator {
    signature: Signature,
}

static CONCAT_OPERATOR: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
    Arc::new(ScalarUDF::new_from_impl(ConcatOperator {
        signature: Signature::any(2, Volatility::Immutable),
    }))
});

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        "||"
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        let [left, right] = args else {
            return Err(DataFusionError::Plan("|| takes two operands".into()));
        };
        let joined = BinaryExpr::new(
            Box::new(left.clone()),
            Operator::StringConcat,
            Box::new(right.clone()),
        );
        Ok(Expr::BinaryExpr(joined).schema_name().to_string())
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan("|| takes two operands".into()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [left, right] = args.args.as_slice() else {
            return Err(DataFusionError::Plan("|| takes two operands".into()));
        };
        check(
            "||",
            &add(&value_sizes_of(left, rows)?, &value_sizes_of(right, rows)?),
            "would make",
        )?;
        let scalar = matches!(
            (left, right),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let joined = concat_elements_dyn(&left.to_array(rows)?, &right.to_array(rows)?)?;
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&joined, 0)?)
        } else {
            ColumnarValue::Array(joined)
        })
    }
}

/// The analyzer rule that puts every scalar function of a plan (its
/// subqueries included) under the bounds, and turns string `||` into
/// [`ConcatOperator`]. Runs after type coercion, so operand types are final.
#[derive(Debug, Default)]
pub(crate) struct BoundValues;

impl AnalyzerRule for BoundValues {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| expr.transform_up(bound_expression))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "cellflight_bound_values"
    }
}

fn bound_expression(expr: Expr) -> Result<Transformed<Expr>> {
    Ok(match expr {
        Expr::ScalarFunction(call) if !is_bounded(&call.func) => {
            let func = BoundedFunction::wrap(call.func);
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                func, call.args,
            )))
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::StringConcat,
            right,
        }) => Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::clone(&CONCAT_OPERATOR),
            vec![*left, *right],
        ))),
        other => Transformed::no(other),
    })
}

fn is_bounded(func: &ScalarUDF) -> bool {
    let inner: &dyn Any = func.inner().as_ref();
    inner.is::<BoundedFunction>() || inner.is::<ConcatOperator>()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::RecordBatch;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use crate::session::bounded_state;

    async fn run(sql: &str) -> Result<Vec<RecordBatch>, String> {
        let ctx = SessionContext::new_with_state(bounded_state(SessionStateBuilder::new()));
        let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
        df.collect().await.map_err(|e| e.to_string())
    }

    async fn refusal(sql: &str) -> String {
        match run(sql).await {
            Ok(_) => panic!("{sql} was not refused"),
            Err(message) => message,
        }
    }

    async fn single_value(sql: &str) -> String {
        let batches = run(sql).await.unwrap();
        let formatted = datafusion::arrow::util::display::ArrayFormatter::try_new(
            batches[0].column(0).as_ref(),
            &Default::default(),
        )
        .unwrap()
        .value(0)
        .to_string();
        formatted
    }

    #[tokio::test]
    async fn a_value_sized_by_an_argument_is_refused_before_it_is_made() {
        for sql in [
            "SELECT repeat('x', 100000000000)",
            "SELECT lpad('x', 100000000000, 'y')",
            "SELECT rpad('x', 100000000000)",
            "SELECT regexp_replace(repeat('ab', 30000), 'a', repeat('x', 1000), 'g')",
        ] {
            let message = refusal(sql).await;
            assert!(
                message.contains("would make a value of"),
                "{sql}: {message}"
            );
            assert!(
                message.contains("at most 65536 bytes a value"),
                "{sql}: {message}"
            );
        }
    }

    #[tokio::test]
    async fn doubling_through_subqueries_stops_at_the_bound() {
        for join in [
            "s || s",
            "concat(s, s)",
            "concat_ws(',', s, s)",
            "overlay(s placing s from 1 for 0)",
        ] {
            let sql = format!(
                "WITH a AS (SELECT repeat('x', 40000) AS s), b AS (SELECT {join} AS s FROM a) SELECT length(s) FROM b"
            );
            let message = refusal(&sql).await;
            assert!(message.contains("a value of 80"), "{join}: {message}");
        }
    }

    #[tokio::test]
    async fn a_join_of_many_arguments_is_refused_before_it_is_made() {
        let many = vec!["s"; 10_000].join(", ");
        for join in [format!("concat({many})"), format!("concat_ws(',', {many})")] {
            let sql = format!("WITH a AS (SELECT repeat('x', 60000) AS s) SELECT {join} FROM a");
            let message = refusal(&sql).await;
            assert!(message.contains("would make a value of"), "{message}");
        }
        let sql = "SELECT replace(repeat('ab', 1000), 'a', repeat('y', 1000))";
        assert!(refusal(sql).await.contains("replace would make"));
        assert_eq!(single_value("SELECT replace('a-b', '-', '+')").await, "a+b");
        assert_eq!(single_value("SELECT concat_ws('-', 'a', 'b')").await, "a-b");
    }

    #[tokio::test]
    async fn a_batch_of_values_within_the_value_bound_is_bounded_too() {
        // Sized by a column, so made row by row rather than folded once.
        let sql = "SELECT repeat('x', 60000 + value % 2) FROM generate_series(1, 2000)";
        let message = refusal(sql).await;
        assert!(message.contains("bytes for one batch of rows"), "{message}");
    }

    #[tokio::test]
    async fn bounded_functions_answer_and_name_columns_as_before() {
        assert_eq!(single_value("SELECT repeat('ab', 3)").await, "ababab");
        assert_eq!(single_value("SELECT lpad('7', 3, '0')").await, "007");
        assert_eq!(single_value("SELECT arrow_cast(7, 'Int8') + 1").await, "8");
        assert_eq!(single_value("SELECT 'a' || 'b' || 'c'").await, "abc");
        assert_eq!(
            single_value("SELECT CAST(NULL AS VARCHAR) || 'b'").await,
            ""
        );
        assert_eq!(
            single_value("SELECT regexp_replace('a-b-c', '-', '+', 'g')").await,
            "a+b+c"
        );
        let batches = run("SELECT upper('a'), 'a' || 'b'").await.unwrap();
        let names: Vec<String> = batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, [r#"upper(Utf8("a"))"#, r#"Utf8("a") || Utf8("b")"#]);
    }

    #[tokio::test]
    async fn a_table_series_past_its_bound_is_refused_before_any_row() {
        let message = refusal("SELECT count(*) FROM generate_series(0, 4000000000)").await;
        assert!(message.contains("a series of 4000000001 rows"), "{message}");
        assert_eq!(
            single_value("SELECT count(*) FROM range(0, 1000)").await,
            "1000"
        );
    }
}
