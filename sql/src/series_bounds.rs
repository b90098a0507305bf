//! Bounds on the table functions `generate_series` and `range`. Their rows
//! are made lazily, a batch at a time, so a long series costs time (which
//! the deadline bounds) rather than memory; but a cohort or weight query
//! over one would be asked to hold every row, and a series longer than any
//! dataset has no use here. An integer series is refused past
//! [`MAX_SERIES_ROWS`] before anything is made.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::Expr;

use crate::error::SqlError;

/// Most rows of one integer series (about a billion): ten times the cells
/// of the largest atlases.
pub const MAX_SERIES_ROWS: u64 = 1 << 30;

/// The default series functions, bounded, in place of DataFusion's.
pub(crate) fn bound_series_functions(state: &mut SessionState) {
    for name in ["generate_series", "range"] {
        let Some(inner) = state
            .table_functions()
            .get(name)
            .map(|f| Arc::clone(f.function()))
        else {
            continue;
        };
        let includes_stop = name == "generate_series";
        state.register_udtf(
            name,
            Arc::new(BoundedSeries {
                inner,
                includes_stop,
            }),
        );
    }
}

#[derive(Debug)]
struct BoundedSeries {
    inner: Arc<dyn TableFunctionImpl>,
    includes_stop: bool,
}

impl TableFunctionImpl for BoundedSeries {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        if let Some(rows) = integer_series_rows(args.exprs(), self.includes_stop) {
            if rows > u128::from(MAX_SERIES_ROWS) {
                return Err(DataFusionError::External(Box::new(
                    SqlError::ResourceExhausted {
                        limit: format!(
                            "a series of {rows} rows; a series has at most {MAX_SERIES_ROWS}"
                        ),
                    },
                )));
            }
        }
        self.inner.call_with_args(args)
    }
}

/// Rows of `(stop)`, `(start, stop)` or `(start, stop, step)` when every
/// argument is an integer literal; `None` for any other series (dates,
/// timestamps, nulls), which DataFusion checks and makes lazily.
fn integer_series_rows(args: &[Expr], includes_stop: bool) -> Option<u128> {
    let values: Vec<i128> = args
        .iter()
        .map(|arg| match arg {
            Expr::Literal(ScalarValue::Int64(Some(n)), _) => Some(i128::from(*n)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let (start, stop, step) = match values.as_slice() {
        [stop] => (0, *stop, 1),
        [start, stop] => (*start, *stop, 1),
        [start, stop, step] => (*start, *stop, *step),
        _ => return None,
    };
    if step == 0 {
        return None;
    }
    let steps = (stop - start) / step;
    let reaches_stop = (stop - start) % step == 0;
    let rows = match (steps >= 0, includes_stop || !reaches_stop) {
        (false, _) => 0,
        (true, true) => steps + 1,
        (true, false) => steps,
    };
    u128::try_from(rows).ok()
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::lit;

    use super::*;

    fn rows(args: &[i64], includes_stop: bool) -> Option<u128> {
        let args: Vec<Expr> = args.iter().map(|&n| lit(n)).collect();
        integer_series_rows(&args, includes_stop)
    }

    #[test]
    fn rows_are_counted_as_the_series_makes_them() {
        assert_eq!(rows(&[5], true), Some(6)); // 0..=5
        assert_eq!(rows(&[5], false), Some(5)); // 0..5
        assert_eq!(rows(&[2, 10, 3], true), Some(3)); // 2, 5, 8
        assert_eq!(rows(&[2, 11, 3], false), Some(3)); // 2, 5, 8
        assert_eq!(rows(&[10, 0, -2], true), Some(6));
        assert_eq!(rows(&[10, 0], true), Some(0));
        assert_eq!(rows(&[0, 4_000_000_000], true), Some(4_000_000_001));
        assert_eq!(rows(&[i64::MIN, i64::MAX], true), Some(1 << 64));
    }

    #[test]
    fn non_integer_series_are_left_to_datafusion() {
        assert_eq!(integer_series_rows(&[lit(1.5)], true), None);
        assert_eq!(rows(&[0, 10, 0], true), None);
    }
}
