//! `cellflight hash-password`: the `password_hash` of a users file, made
//! from a password read on stdin (so it shows in no process list or shell
//! history), e.g. `read -rs PW; printf '%s\n' "$PW" | cellflight hash-password`.

use std::io::BufRead;

use cellflight_flight::hash_password;

use super::CommandError;

pub(super) fn run() -> Result<(), CommandError> {
    let password = read_password(std::io::stdin().lock())?;
    println!("{}", hash_password(&password)?);
    Ok(())
}

/// The first line of `input`, without its line ending.
fn read_password(mut input: impl BufRead) -> Result<String, CommandError> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(CommandError::Stdin)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line_without_its_ending() {
        for (input, expected) in [
            ("wonderland\n", "wonderland"),
            ("wonderland\r\nsecond line\n", "wonderland"),
            ("no newline", "no newline"),
            (" spaces kept \n", " spaces kept "),
            ("\n", ""),
            ("", ""),
        ] {
            assert_eq!(read_password(input.as_bytes()).unwrap(), expected);
        }
    }
}
