//! A read of a memory-mapped file that another process truncated faults
//! with SIGBUS, whose default action kills the process: every stream of
//! the server, not only the one that read. So each matrix mapping is
//! registered here. A SIGBUS inside a registered mapping puts a page of
//! zeros in place of the lost one (the read completes) and marks the
//! mapping damaged; its reader checks the mark once it has used what it
//! read, and answers an error instead. A SIGBUS anywhere else goes to the
//! handler that was there before (Rust's own, which reports a stack
//! overflow or restores the default action).

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Mappings guarded at once: one a dataset's matrix, open or recently
/// replaced. Past it a mapping is simply left unguarded.
const MAX_REGIONS: usize = 4096;

struct Region {
    claimed: AtomicBool,
    /// Zero while the slot is free; set last, so a reader of a non-zero
    /// start sees its length.
    start: AtomicUsize,
    len: AtomicUsize,
    damaged: AtomicBool,
}

impl Region {
    const fn new() -> Self {
        Self {
            claimed: AtomicBool::new(false),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            damaged: AtomicBool::new(false),
        }
    }

    fn contains(&self, address: usize) -> bool {
        let start = self.start.load(Ordering::Acquire);
        start != 0 && address >= start && address - start < self.len.load(Ordering::Acquire)
    }
}

static REGIONS: [Region; MAX_REGIONS] = [const { Region::new() }; MAX_REGIONS];
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL: Once = Once::new();

/// A registered mapping; dropping it (before the mapping is unmapped)
/// frees its slot.
#[derive(Debug)]
pub(crate) struct GuardedRegion {
    index: usize,
}

impl GuardedRegion {
    /// Guards the `len` bytes mapped at `start`; none when every slot is
    /// taken or the handler could not be installed.
    pub(crate) fn register(start: *const u8, len: usize) -> Option<Self> {
        install_handler();
        PREVIOUS.get()?;
        let index = REGIONS.iter().position(|region| {
            region
                .claimed
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })?;
        let region = &REGIONS[index];
        region.damaged.store(false, Ordering::Release);
        region.len.store(len, Ordering::Release);
        region.start.store(start as usize, Ordering::Release);
        Some(Self { index })
    }

    /// Whether a read of the mapping faulted (its file was truncated).
    pub(crate) fn is_damaged(&self) -> bool {
        REGIONS[self.index].damaged.load(Ordering::Acquire)
    }
}

impl Drop for GuardedRegion {
    fn drop(&mut self) {
        let region = &REGIONS[self.index];
        region.start.store(0, Ordering::Release);
        region.len.store(0, Ordering::Release);
        region.claimed.store(false, Ordering::Release);
    }
}

fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        PAGE_SIZE.store(usize::try_from(page).unwrap_or(4096), Ordering::Release);
        // SAFETY: a zeroed sigaction is a valid value (no handler, empty
        // mask) that the fields below complete; `on_sigbus` has the
        // signature SA_SIGINFO requires, and `previous` is written by the
        // call before it is read.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
                let _ = PREVIOUS.set(previous);
            }
        }
    });
}

/// The SIGBUS handler: patches a fault inside a guarded mapping, forwards
/// any other. Only async-signal-safe work: atomics, mmap, sigaction.
extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    if let Some(region) = REGIONS.iter().find(|region| region.contains(address)) {
        let page = PAGE_SIZE.load(Ordering::Acquire);
        let aligned = address & !(page - 1);
        // SAFETY: the page lies in a live read-only file mapping of ours
        // (registered, and unregistered before it is unmapped); replacing
        // it with an anonymous zero page changes only what that mapping
        // reads, which is already lost.
        let patched = unsafe {
            libc::mmap(
                aligned as *mut c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if patched != libc::MAP_FAILED {
            region.damaged.store(true, Ordering::Release);
            return;
        }
    }
    forward(signal, info, context);
}

/// Hands the signal to the handler installed before ours; with none, the
/// default action is restored and the faulting read, run again, takes it.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let Some(previous) = PREVIOUS.get() else {
        return;
    };
    let handler = previous.sa_sigaction;
    if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
        if previous.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: with SA_SIGINFO the previous handler has this signature.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                unsafe { std::mem::transmute(handler) };
            handler(signal, info, context);
        } else {
            // SAFETY: without SA_SIGINFO the previous handler takes the signal alone.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            handler(signal);
        }
        return;
    }
    // SAFETY: restoring the default action for SIGBUS has no preconditions.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_read_past_a_truncation_reads_zeros_and_marks_the_mapping_damaged() {
        let page = PAGE_SIZE.load(Ordering::Acquire).max(4096);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 3 * page]).unwrap();
        // SAFETY: the test truncates the file on purpose, under the guard.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let guard = GuardedRegion::register(map.as_ptr(), map.len()).unwrap();
        assert_eq!(map[2 * page], 7);
        assert!(!guard.is_damaged());

        file.set_len(page as u64).unwrap();
        // SAFETY: a volatile read, so the compiler cannot skip the fault.
        let lost = unsafe { std::ptr::read_volatile(map.as_ptr().add(2 * page)) };
        assert_eq!(lost, 0);
        assert!(guard.is_damaged());
        assert_eq!(map[0], 7, "the pages still in the file read as before");
        drop(guard);
    }

    #[test]
    fn a_freed_slot_is_registered_again_undamaged() {
        let bytes = [1u8; 64];
        let first = GuardedRegion::register(bytes.as_ptr(), bytes.len()).unwrap();
        let index = first.index;
        REGIONS[index].damaged.store(true, Ordering::Release);
        drop(first);
        let again = GuardedRegion::register(bytes.as_ptr(), bytes.len()).unwrap();
        assert!(!again.is_damaged());
    }
}
