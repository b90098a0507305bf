"""The client's failover policy (docs/protocol.md, "Replicas"), without a
server: which errors move a stream to the next location, and the round of
locations it may try."""

from __future__ import annotations

import client_helpers  # noqa: F401  (the package of this checkout)
import pytest
from cellflight import errors
from cellflight._failover import Locations, fails_over


def test_unavailable_and_aborted_fail_over_and_refusals_do_not():
    assert fails_over(errors.Unavailable("down")) and fails_over(errors.Aborted("idle"))
    for refusal in (
        errors.InvalidArgument, errors.PermissionDenied, errors.NotFound, errors.Unauthenticated,
        errors.FailedPrecondition, errors.ResourceExhausted, errors.IncompleteStream,
    ):
        assert not fails_over(refusal("same on every replica")), refusal
    assert not fails_over(ValueError("not the server's"))


def test_after_a_failure_each_location_is_tried_once_the_failed_one_last():
    locations, visited = Locations(["a", "b", "c"], partition=1), ["a"]
    with pytest.raises(errors.Unavailable) as raised:
        while True:
            locations.fail(errors.Unavailable(f"{locations.current} is down"), next_batch=7)
            visited.append(locations.current)
    assert visited == ["a", "b", "c", "a"]
    message = raised.value.message
    assert "partition 1" in message and "batch 7" in message
    for location in "abc":
        assert f"{location}: UNAVAILABLE: {location} is down" in message


def test_a_batch_received_starts_a_new_round():
    locations = Locations(["a", "b", "c"], partition=0)
    for next_batch in range(10):
        locations.fail(errors.Unavailable("down"), next_batch)
    assert locations.current == "b", "10 failures, one a round: a→b→c→a..."


def test_one_location_is_asked_again_once_and_its_error_kept():
    locations = Locations(["grpc://one:1"], partition=0)
    locations.fail(errors.Aborted("idle"), next_batch=3)
    assert locations.current == "grpc://one:1"
    with pytest.raises(errors.Aborted):
        locations.fail(errors.Aborted("idle again"), next_batch=3)
