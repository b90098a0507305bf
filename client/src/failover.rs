//! Which failures move a partition's stream to another replica, and the
//! round of locations it may still try (docs/protocol.md, "Replicas").
//!
//! After a failure, each of the endpoint's locations is tried at most once,
//! the next one first and the one that failed last, until a batch arrives;
//! when every one has failed, the stream ends with an error naming each
//! location and why it failed.

use tonic::Code;

use crate::ClientError;

/// The status codes another replica (or the same one, asked again) may
/// answer differently: a replica down, a connection broken or silent past
/// the failover timeout (UNAVAILABLE), a stream the server gave up on
/// (ABORTED). Everything else (a bad request, a missing grant or dataset,
/// a replaced version) is the same on every replica.
const FAILS_OVER: [Code; 2] = [Code::Unavailable, Code::Aborted];

impl ClientError {
    /// Whether the stream this error interrupted goes on at the next location.
    pub fn fails_over(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            _ => self
                .status_code()
                .is_some_and(|code| FAILS_OVER.contains(&code)),
        }
    }
}

/// Where one partition is read from: the endpoint's locations in order,
/// the current one, and the round of failures under way.
#[derive(Debug)]
pub(crate) struct Locations {
    locations: Vec<String>,
    at: usize,
    round: Option<Round>,
}

#[derive(Debug)]
struct Round {
    /// The batch due when the round began: a later one ends it.
    from_batch: u64,
    /// Whether each location has had its try in this round.
    tried: Vec<bool>,
    /// Each location that failed in this round, and why (its last failure).
    failures: Vec<(String, String)>,
}

impl Locations {
    /// `locations` must not be empty.
    pub(crate) fn new(locations: Vec<String>) -> Self {
        debug_assert!(!locations.is_empty());
        Self {
            locations,
            at: 0,
            round: None,
        }
    }

    pub(crate) fn current(&self) -> &str {
        &self.locations[self.at]
    }

    /// Records that the current location failed with `error` while batch
    /// `next_batch` was due, and moves to the next location; when every
    /// location has had its try in this round, the error naming them all.
    pub(crate) fn fail(
        &mut self,
        error: &ClientError,
        partition: u32,
        next_batch: u64,
    ) -> Result<(), ClientError> {
        let count = self.locations.len();
        let round = match &mut self.round {
            Some(round) if round.from_batch == next_batch => round,
            stale => stale.insert(Round {
                from_batch: next_batch,
                tried: vec![false; count],
                failures: Vec::new(),
            }),
        };
        let failed = self.locations[self.at].clone();
        round.failures.retain(|(location, _)| *location != failed);
        round.failures.push((failed, error.to_string()));
        if round.tried.iter().all(|&tried| tried) {
            return Err(ClientError::Failover {
                partition,
                next: next_batch,
                failures: round.failures.clone(),
            });
        }
        self.at = (self.at + 1) % count;
        round.tried[self.at] = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code) -> ClientError {
        ClientError::Status(tonic::Status::new(code, "why"))
    }

    #[test]
    fn unavailable_and_aborted_fail_over_and_refusals_do_not() {
        assert!(status(Code::Unavailable).fails_over());
        assert!(status(Code::Aborted).fails_over());
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::NotFound,
            Code::Unauthenticated,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
        ] {
            assert!(!status(code).fails_over(), "{code:?}");
        }
        let flight =
            arrow_flight::error::FlightError::Tonic(Box::new(tonic::Status::unavailable("")));
        assert!(ClientError::Flight(flight).fails_over());
        assert!(!ClientError::Protocol("skipped a batch".into()).fails_over());
    }

    fn three() -> Locations {
        Locations::new(["a", "b", "c"].map(String::from).into())
    }

    #[test]
    fn after_a_failure_each_location_is_tried_once_the_failed_one_last() {
        let mut locations = three();
        let mut visited = vec![locations.current().to_string()];
        let error = loop {
            match locations.fail(&status(Code::Unavailable), 1, 7) {
                Ok(()) => visited.push(locations.current().to_string()),
                Err(error) => break error,
            }
        };
        assert_eq!(visited, ["a", "b", "c", "a"]);
        let message = error.to_string();
        assert!(
            message.contains("partition 1") && message.contains("batch 7"),
            "{message}"
        );
        for location in ["a:", "b:", "c:"] {
            assert!(message.contains(location), "{message}");
        }
    }

    #[test]
    fn a_batch_received_starts_a_new_round() {
        let mut locations = three();
        for next_batch in 0..10 {
            locations
                .fail(&status(Code::Unavailable), 0, next_batch)
                .unwrap();
        }
        assert_eq!(
            locations.current(),
            "b",
            "10 failures, one a round: a→b→c→a..."
        );
    }

    #[test]
    fn one_location_is_asked_again_once() {
        let mut locations = Locations::new(vec!["a".into()]);
        locations.fail(&status(Code::Aborted), 0, 3).unwrap();
        assert_eq!(locations.current(), "a");
        assert!(locations.fail(&status(Code::Aborted), 0, 3).is_err());
    }
}
