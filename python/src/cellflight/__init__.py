"""cellflight: single-cell minibatches over Arrow Flight.

    import cellflight
    client = cellflight.connect("grpc://127.0.0.1:50051")
    client.sql("SELECT plate, count(*) AS n FROM demo.cells GROUP BY plate")
    for batch in client.loader("demo", batch_size=64):
        ...

PyTorch: `cellflight.torch.CellDataset`; Lightning:
`cellflight.lightning.CellFlightDataModule`. See docs/python.md.
"""

from .client import Client, DatasetInfo, connect
from .errors import (
    Aborted,
    Cancelled,
    CellflightError,
    DeadlineExceeded,
    FailedPrecondition,
    IncompleteStream,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SharedMemoryError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from .loader import Batch, Loader, Tokens

__version__ = "0.1.0"

__all__ = [
    "Aborted", "Batch", "Cancelled", "CellflightError", "Client", "DatasetInfo", "DeadlineExceeded", "FailedPrecondition",
    "IncompleteStream", "InvalidArgument", "Loader", "NotFound", "PermissionDenied", "ResourceExhausted",
    "SharedMemoryError", "Tokens", "Unauthenticated", "Unavailable", "Unimplemented", "connect",
]
