//! Bounds on the shape of SQL text, checked before it is parsed. The
//! parser reads a chain such as `a = 1 OR a = 2 OR …` in a loop, but every
//! later stage (planning, optimising, printing) walks the tree it makes by
//! recursion, one stack frame a level: a generated chain of a few thousand
//! terms overflowed a thread's stack and took the server down. Counting
//! operators in the tokens bounds that depth without recursing at all.

use cellflight_schemas::bounds::SQL_BYTES as MAX_SQL_BYTES;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::SqlError;

/// Most operators (`AND`, `OR`, `NOT`, comparisons, arithmetic) in one text:
/// each may add a level to an expression tree.
pub const MAX_SQL_OPERATORS: usize = 1_000;

/// Refuses `sql` (named `what` in the error) when it is longer or holds
/// more operators than the bounds allow. Text that does not tokenize is
/// left to the parser, which says what is wrong with it.
pub(crate) fn check_shape(sql: &str, what: &str) -> Result<(), SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::refused(
            format!("{what} of {} bytes", sql.len()),
            format!("SQL text is at most {MAX_SQL_BYTES} bytes"),
        ));
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let operators = tokens.iter().filter(|token| is_operator(token)).count();
    if operators > MAX_SQL_OPERATORS {
        return Err(SqlError::refused(
            format!("{what} with {operators} operators"),
            format!(
                "at most {MAX_SQL_OPERATORS}; a long OR list of ids is better written cell_id IN (…), which takes any number"
            ),
        ));
    }
    Ok(())
}

fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(word) => matches!(word.keyword, Keyword::AND | Keyword::OR | Keyword::NOT),
        Token::DoubleEq
        | Token::Eq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::DuckIntDiv
        | Token::Mod
        | Token::StringConcat
        | Token::Ampersand
        | Token::Pipe
        | Token::Caret => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn or_chain(terms: usize) -> String {
        (0..terms)
            .map(|id| format!("cell_id = {id}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    #[test]
    fn a_chain_at_the_bound_passes_and_one_past_it_is_refused_suggesting_in() {
        // n terms: n comparisons and n - 1 ORs.
        assert!(check_shape(&or_chain(500), "a cohort predicate").is_ok());
        let message = check_shape(&or_chain(501), "a cohort predicate")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("a cohort predicate with 1001 operators"),
            "{message}"
        );
        assert!(message.contains("cell_id IN (…)"), "{message}");
    }

    #[test]
    fn an_in_list_of_100000_ids_passes() {
        let ids: Vec<String> = (0..100_000).map(|id| id.to_string()).collect();
        let sql = format!("cell_id IN ({})", ids.join(", "));
        assert!(check_shape(&sql, "a cohort predicate").is_ok());
    }

    #[test]
    fn text_past_the_length_bound_is_refused_by_its_length() {
        let sql = "x".repeat(MAX_SQL_BYTES + 1);
        let message = check_shape(&sql, "a query").unwrap_err().to_string();
        assert!(
            message.contains(&format!("a query of {} bytes", MAX_SQL_BYTES + 1)),
            "{message}"
        );
    }

    #[test]
    fn operators_inside_strings_and_identifiers_do_not_count() {
        let sql = format!("plate = '{}'", "a OR b AND ".repeat(2_000));
        assert!(check_shape(&sql, "a cohort predicate").is_ok());
    }
}
