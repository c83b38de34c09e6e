"""Sample-level DP-SGD on a participant through Opacus (the second privacy option).

Opacus clips each example's gradient and adds noise per step with Poisson-sampled batches; the
epsilon is computed by this package's accountant (dp-accounting RDP), the same one as client-level DP.
"""
from __future__ import annotations

import secrets
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trustmesh.privacy.accountant import dpsgd_round_steps, epsilon_after
from trustmesh.privacy.errors import PrivacyAlreadyApplied, PrivacyConfigError

__all__ = ["PrivateTrainer", "PrivateTrainResult", "make_private_trainer"]


@dataclass(frozen=True, kw_only=True)
class PrivateTrainResult:
    """What one private local training run did: samples, last epoch's mean loss, seconds, DP-SGD steps."""

    num_samples: int
    loss: float
    seconds: float
    steps: int
    sampling_rate: float
    noise_multiplier: float
    clip: float

    def epsilon(self, delta: float, *, previous_steps: int = 0) -> float:
        """Epsilon of this run (plus ``previous_steps`` earlier steps on the same data) at ``delta``."""
        return epsilon_after(previous_steps + self.steps, noise_multiplier=self.noise_multiplier,
                             sampling_rate=self.sampling_rate, delta=delta)


class PrivateTrainer:
    """One round's DP-SGD run over (X, y); trains ``model`` in place. Runs once (a second run raises)."""

    def __init__(self, *, model: nn.Module, X: np.ndarray, y: np.ndarray, noise_multiplier: float, clip: float,
                 batch_size: int, epochs: int, lr: float, momentum: float = 0.0, seed: int | None = None) -> None:
        if len(X) != len(y) or len(X) == 0:
            raise PrivacyConfigError("X and y must be non-empty and of equal length")
        if not (clip > 0 and noise_multiplier >= 0 and batch_size >= 1 and epochs >= 1 and lr > 0
                and 0 <= momentum < 1):
            raise PrivacyConfigError("need clip > 0, noise_multiplier >= 0, batch_size >= 1, epochs >= 1, lr > 0, "
                                     "0 <= momentum < 1")
        self.model = model
        self.noise_multiplier, self.clip = float(noise_multiplier), float(clip)
        self.batch_size, self.epochs, self.lr, self.momentum = batch_size, epochs, lr, momentum
        # The noise is drawn from torch's global generator: a seed anyone can guess lets them redraw
        # and subtract it, so only benches pass one; by default it comes from the OS.
        self.seed = secrets.randbits(63) if seed is None else seed
        self._x = torch.from_numpy(np.array(X, dtype=np.float32))
        self._y = torch.from_numpy(np.array(y, dtype=np.int64))
        self._done = False

    @property
    def sampling_rate(self) -> float:
        """Poisson sampling rate q = batch_size / N (the expected batch is batch_size)."""
        return dpsgd_round_steps(len(self._x), batch_size=self.batch_size, epochs=1)[0]

    @property
    def steps_per_epoch(self) -> int:
        """ceil(N / B): the batches of one epoch the accountant counts (Opacus takes at most that many)."""
        return dpsgd_round_steps(len(self._x), batch_size=self.batch_size, epochs=1)[1]

    def train(self) -> PrivateTrainResult:
        """Run DP-SGD for ``epochs`` epochs of Poisson-sampled batches."""
        from opacus import PrivacyEngine

        if self._done:
            raise PrivacyAlreadyApplied("this DP-SGD run already happened; build a new trainer for a new round")
        self._done = True
        self.model.train()  # Opacus refuses a model left in eval mode (e.g. by the last evaluation)
        torch.set_num_threads(1)
        torch.manual_seed(self.seed)
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(TensorDataset(self._x, self._y), batch_size=self.batch_size, shuffle=True,
                            generator=generator)
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=self.momentum)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus warns about secure_mode and the RNG it uses
            engine = PrivacyEngine(accountant="rdp")
            module, optimizer, loader = engine.make_private(
                module=self.model, optimizer=optimizer, data_loader=loader,
                noise_multiplier=self.noise_multiplier, max_grad_norm=self.clip, poisson_sampling=True)
        loss_fn = nn.CrossEntropyLoss()
        module.train()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch notes the per-sample hooks fire without input grads
            steps, epoch_loss = self._epochs(module, optimizer, loader, loss_fn)
        module.remove_hooks()
        return PrivateTrainResult(num_samples=len(self._x), loss=epoch_loss,
                                  seconds=time.perf_counter() - started, steps=steps,
                                  sampling_rate=self.sampling_rate, noise_multiplier=self.noise_multiplier,
                                  clip=self.clip)

    def _epochs(self, module: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                loss_fn: nn.Module) -> tuple[int, float]:
        steps, epoch_loss = 0, float("nan")
        for _ in range(self.epochs):
            total, seen = 0.0, 0
            for xb, yb in loader:
                optimizer.zero_grad(set_to_none=True)
                if len(xb) == 0:  # Poisson sampling can draw an empty batch; it still counts as a step
                    optimizer.step()
                    steps += 1
                    continue
                loss = loss_fn(module(xb), yb)
                loss.backward()
                optimizer.step()
                steps += 1
                total += float(loss.detach()) * len(xb)
                seen += len(xb)
            epoch_loss = total / max(seen, 1)
        return steps, epoch_loss


def make_private_trainer(model: nn.Module, X: np.ndarray, y: np.ndarray, *, noise_multiplier: float,
                         clip: float, batch_size: int, epochs: int, lr: float, momentum: float = 0.0,
                         seed: int | None = None) -> PrivateTrainer:
    """A DP-SGD trainer for one participant's round; call ``.train()`` once (seed: benches only)."""
    return PrivateTrainer(model=model, X=X, y=y, noise_multiplier=noise_multiplier, clip=clip,
                          batch_size=batch_size, epochs=epochs, lr=lr, momentum=momentum, seed=seed)
