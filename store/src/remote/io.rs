//! The runtime remote reads run on. Callers are synchronous (a stream's
//! producer thread, opening a dataset, a CLI command), some of them on no
//! runtime at all; they hand the work to this runtime and wait for it, so
//! no caller ever needs (or blocks) a runtime of its own.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

use crate::StoreError;

/// Enough threads to keep many ranged GETs in flight; they mostly wait.
const IO_THREADS: usize = 2;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime, StoreError> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(IO_THREADS)
                .thread_name("object-store")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| StoreError::TaskFailed {
            task: "starting the object store runtime",
            reason: reason.clone(),
        })
}

/// Runs `work` on the object store runtime and waits for its answer.
pub(crate) fn wait<T: Send + 'static>(
    work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let task = runtime()?.spawn(work);
    futures::executor::block_on(task).map_err(|e| StoreError::TaskFailed {
        task: "reading from the object store",
        reason: e.to_string(),
    })?
}

/// Starts `work` on a blocking thread of the object store runtime (a
/// bounded pool) without waiting for it.
pub(crate) fn spawn_blocking(work: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    runtime()?.spawn_blocking(work);
    Ok(())
}
