"""A Lightning DataModule over `CellDataset` (needs `lightning`)."""

from __future__ import annotations

from typing import Any

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl  # type: ignore[no-redef]

from torch.utils.data import DataLoader

from .torch import CellDataset


class _EpochLoader(DataLoader):
    """A DataLoader that sets the dataset's epoch from the trainer at each
    pass, before its workers take their copy of the dataset."""

    def __init__(self, module: "CellFlightDataModule", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._module = module

    def __iter__(self):
        trainer = getattr(self._module, "trainer", None)
        if trainer is not None:
            self.dataset.set_epoch(trainer.current_epoch)
        return super().__iter__()

    # Lightning saves a loader's state with the fit loop's when the loader
    # has these, and restores it before iterating: a mid-epoch checkpoint
    # then resumes the epoch where it stopped.
    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)


class CellFlightDataModule(pl.LightningDataModule):
    """Training (and optionally validation) minibatches from a cellflight
    server. `train` and `val` are CellDataset keywords (the request: query,
    batch_size, obs_columns, ...); the DataModule's `num_workers` is given
    to both the dataset and its DataLoader. The epoch follows the trainer's,
    and mid-epoch progress is saved in checkpoints and restored from them
    (`fit(..., ckpt_path=...)` reads exactly the rest of the epoch).

        dm = CellFlightDataModule("grpc://127.0.0.1:50051", "demo", num_workers=2,
                                  train=dict(query="plate != 'plate1'", batch_size=64),
                                  val=dict(query="plate = 'plate1'", sampling="sequential"))
        trainer.fit(model, datamodule=dm)
    """

    def __init__(self, address: str, dataset: str | None = None, *, num_workers: int = 0,
                 train: dict[str, Any] | None = None, val: dict[str, Any] | None = None, **loader_options):
        super().__init__()
        self.address, self.dataset = address, dataset
        self.num_workers = num_workers
        self.train_options, self.val_options = dict(train or {}), (dict(val) if val is not None else None)
        self.loader_options = loader_options
        self.train_dataset: CellDataset | None = None
        self.val_dataset: CellDataset | None = None
        self._pending_state: dict | None = None
        if self.val_options is None:
            self.val_dataloader = None  # Lightning then sees no validation data (rather than an empty loader)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset = CellDataset(self.address, self.dataset, num_workers=self.num_workers, **self.train_options)
            if self._pending_state is not None:
                self.train_dataset.load_state_dict(self._pending_state)
                self._pending_state = None
        if self.val_options is not None and self.val_dataset is None:
            self.val_dataset = CellDataset(self.address, self.dataset, num_workers=self.num_workers, **self.val_options)

    def _loader(self, dataset: CellDataset) -> DataLoader:
        return _EpochLoader(self, dataset, batch_size=None, num_workers=self.num_workers, **self.loader_options)

    def train_dataloader(self):
        return self._loader(self.train_dataset)

    def val_dataloader(self):
        return self._loader(self.val_dataset)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and self.train_dataset is not None:
            self.train_dataset.record(batch)
        return batch

    def state_dict(self) -> dict:
        return {"train": self.train_dataset.state_dict()} if self.train_dataset is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if "train" not in state:
            return
        if self.train_dataset is not None:
            self.train_dataset.load_state_dict(state["train"])
        else:
            self._pending_state = state["train"]
