//! A request key is checked against its bound when the request is read,
//! before anything is sized by its value: reading a request or a ticket
//! that asks for billions of partitions, cells or samples allocates no more
//! than reading a sensible one. A counting allocator measures what each
//! decode allocates on the test's own thread.

#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only forwards to the system's"
)]
#![allow(
    clippy::expect_used,
    reason = "a test binary: a failed expectation is a failed test"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use cellflight_schemas::{StreamRequest, StreamTicket};

/// Forwards to the system allocator, counting the bytes each thread asks for.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`; the count is a
// const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.with(|bytes| bytes.set(bytes.get() + layout.size() as u64));
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.with(|bytes| bytes.set(bytes.get() + new_size as u64));
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated on this thread while `work` runs.
fn allocated_by<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATED.with(Cell::get);
    let result = work();
    (result, ALLOCATED.with(Cell::get) - before)
}

/// Far more than decoding a request takes, far less than any key's value.
const SMALL: u64 = 64 << 10;

/// Each numeric key at the largest value its JSON type holds.
const OVERSIZED: [(&str, &str); 6] = [
    ("partitions", r#""partitions": 4294967295"#),
    ("batch_size", r#""batch_size": 4294967295"#),
    ("block_size", r#""block_size": 4294967295"#),
    ("fetch_factor", r#""fetch_factor": 4294967295"#),
    (
        "batch_size × fetch_factor",
        r#""batch_size": 65536, "fetch_factor": 4096"#,
    ),
    (
        "num_samples",
        r#""sampling": "weighted", "weights": "1", "num_samples": 18446744073709551615"#,
    ),
];

#[test]
fn an_oversized_request_key_is_refused_before_anything_is_sized_by_it() {
    for (key, keys) in OVERSIZED {
        let json = format!("{{{keys}}}");
        let (refused, bytes) = allocated_by(|| StreamRequest::from_json(json.as_bytes()));
        let message = refused.expect_err(key).to_string();
        assert!(
            message.contains(&format!("{key} must be at most")),
            "{message}"
        );
        assert!(bytes < SMALL, "refusing {key} allocated {bytes} bytes");
    }
}

#[test]
fn an_oversized_key_in_a_ticket_is_refused_before_anything_is_sized_by_it() {
    for (key, keys) in OVERSIZED {
        let json = format!(
            r#"{{"request": {{{keys}}}, "partition": 0, "dataset_version": "v", "start_batch": 0}}"#
        );
        let (refused, bytes) = allocated_by(|| StreamTicket::from_json(json.as_bytes()));
        let message = refused.expect_err(key).to_string();
        assert!(
            message.contains(&format!("{key} must be at most")),
            "{message}"
        );
        assert!(bytes < SMALL, "refusing {key} allocated {bytes} bytes");
    }
}

#[test]
fn the_counter_sees_an_allocation_the_size_of_a_value() {
    // The measure itself: a buffer sized by a value shows in the count.
    let (buffer, bytes) = allocated_by(|| vec![0_u8; 1 << 20]);
    assert_eq!(buffer.len(), 1 << 20);
    assert!(bytes >= 1 << 20, "{bytes} bytes counted");
}
