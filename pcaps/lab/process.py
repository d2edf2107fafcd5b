"""A deterministic pumping-station process that the lab's servers publish.

Each call to ProcessModel.next() is one scan of the process: slow sinusoids plus seeded
noise, so the same seed and the same number of reads give the same values.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One scan of the process."""

    step: int
    level_pct: float
    flow_m3h: float
    pressure_bar: float
    temperature_c: float
    pump_rpm: float
    motor_current_a: float
    pump_running: bool
    valve_open: bool
    level_high: bool
    level_low: bool


class ProcessModel:
    """Tank, pump and discharge line; the pump runs with hysteresis on the tank level."""

    def __init__(self, seed: int, period: int = 120) -> None:
        self._rng = random.Random(seed)
        self._period = period
        self._step = 0
        self._pump = True

    def _noise(self, scale: float) -> float:
        return self._rng.gauss(0.0, scale)

    def next(self) -> Sample:
        """Advance one scan and return it."""
        phase = 2 * math.pi * self._step / self._period
        level = 55.0 + 20.0 * math.sin(phase) + self._noise(0.3)
        if level > 70.0:
            self._pump = True
        elif level < 40.0:
            self._pump = False
        rpm = 1480.0 + self._noise(4.0) if self._pump else 0.0
        flow = 42.0 + 6.0 * math.cos(phase) + self._noise(0.4) if self._pump else 0.0
        sample = Sample(
            step=self._step,
            level_pct=round(level, 2),
            flow_m3h=round(max(flow, 0.0), 2),
            pressure_bar=round(4.2 + 0.8 * math.sin(phase / 2) + self._noise(0.02), 3),
            temperature_c=round(18.5 + 1.5 * math.sin(phase / 3) + self._noise(0.05), 2),
            pump_rpm=round(rpm, 1),
            motor_current_a=round(31.0 + self._noise(0.3) if self._pump else 0.4, 2),
            pump_running=self._pump,
            valve_open=self._pump,
            level_high=level > 72.0,
            level_low=level < 38.0,
        )
        self._step += 1
        return sample
