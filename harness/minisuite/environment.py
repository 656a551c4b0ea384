"""Procedural synthesis of the eight environmental sound classes.

Each class is a small physical-ish model with wide random variation, so that two clips of
one class rarely sound alike while the classes stay easy to tell apart by ear:

- ``rain``: band-passed noise bed plus droplet "plinks" (rising-pitch bubbles) and clicks.
- ``engine``: firing pulses at the cylinder rate through body resonances, amplitude
  modulated by the firing, idling or revving.
- ``siren``: harmonic swept tone (wail, yelp or hi-lo), sometimes passing by (Doppler).
- ``footsteps``: heel and toe impacts at walking tempo; the surface (wood, gravel,
  concrete, tile) sets the impact sound.
- ``knock``: groups of damped resonant impacts on a door, a table or a window.
- ``bird``: FM chirps (down, up, arched, trilled, whistled syllables) in phrases.
- ``wind``: low-passed noise with gusting amplitude plus howling resonances that rise
  with the gusts.
- ``bell``: inharmonic decaying partials: a church bell, a handbell or wind chimes.

Entry point: :func:`synthesize`.
"""

from __future__ import annotations

import numpy as np

from harness.minisuite.dsp import (
    SR,
    add_at,
    bandpass,
    convolve,
    decay,
    highpass,
    impulse_train,
    lowpass,
    resonator,
    rms,
    smooth_curve,
)

VARIANTS: dict[str, tuple[str, ...]] = {
    "rain": ("heavy", "light"),
    "engine": ("idling", "revving"),
    "siren": ("wail", "yelp", "hilo"),
    "footsteps": ("wood", "gravel", "concrete", "tile"),
    "knock": ("door", "table", "window"),
    "bird": ("single", "flock"),
    "wind": ("gusty", "steady"),
    "bell": ("church", "hand", "chimes"),
}
"""Sub-types of each class. Captions describe the variant; the audio follows it."""

STEP_INTERVALS = {"fast": (0.30, 0.42), "slow": (0.65, 0.90), None: (0.45, 0.62)}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / rms(x)


def rain(rng: np.random.Generator, n: int, variant: str) -> np.ndarray:
    """Rain: a hiss bed plus Poisson droplets (bubble plinks and surface clicks)."""
    heavy = variant == "heavy"
    bed = bandpass(rng.standard_normal(n), rng.uniform(250, 1200), rng.uniform(3500, 7500))
    bed *= 1 + 0.35 * smooth_curve(rng, n, rng.uniform(0.3, 2.0))
    rate = rng.uniform(200, 700) if heavy else rng.uniform(6, 60)
    count = max(int(rng.poisson(rate * n / SR)), 3)
    pos = rng.integers(0, n, count)
    amp = rng.lognormal(0.0, 0.6, count)
    kinds = rng.integers(0, 6, count)
    drops = np.zeros(n)
    for k in range(6):
        length = int(rng.uniform(0.004, 0.02) * SR)
        t = np.arange(length) / SR
        if k % 2 == 0:  # bubble: a decaying sine whose pitch rises
            f = rng.uniform(1200, 5000) * (1 + rng.uniform(0.3, 2.5) * t / t[-1])
            kern = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / rng.uniform(0.002, 0.008))
        else:  # click of a drop on a hard surface
            kern = highpass(rng.standard_normal(length), rng.uniform(800, 3000)) * np.exp(-t / 0.0015)
        sel = kinds == k
        drops += convolve(impulse_train(n, pos[sel], amp[sel]), kern)
    bed_gain = rng.uniform(0.7, 1.0) if heavy else rng.uniform(0.04, 0.2)
    drop_gain = rng.uniform(0.3, 0.7) if heavy else 1.0
    return bed_gain * _unit(bed) + drop_gain * _unit(drops)


def engine(rng: np.random.Generator, n: int, variant: str) -> np.ndarray:
    """Engine: firing pulses (cylinder pattern) through body resonances, idling or revving."""
    t = np.arange(n) / SR
    f_idle = rng.uniform(12, 40)  # firing rate in Hz (rpm / 60 * cylinders / 2)
    load = np.zeros(n)
    if variant == "revving":
        for _ in range(int(rng.integers(1, 3))):
            centre = rng.uniform(0.15, 0.75) * t[-1]
            rise, fall = rng.uniform(0.08, 0.3), rng.uniform(0.25, 0.8)
            width = np.where(t < centre, rise, fall)
            load = np.maximum(load, rng.uniform(1.5, 4.0) * np.exp(-0.5 * ((t - centre) / width) ** 2))
    freq = f_idle * (1 + load) * (1 + 0.03 * smooth_curve(rng, n, 4.0))
    phase = np.cumsum(freq) / SR
    firing = np.flatnonzero(np.diff(np.floor(phase)) > 0)
    cylinders = int(rng.choice([3, 4, 6, 8]))
    pattern = rng.uniform(0.55, 1.0, cylinders)
    amps = pattern[np.arange(len(firing)) % cylinders] * rng.uniform(0.9, 1.1, len(firing))
    length = int(0.015 * SR)
    pulse = rng.standard_normal(length) * decay(length, rng.uniform(0.006, 0.02))
    x = convolve(impulse_train(n, firing, amps), pulse)
    x = resonator(x, rng.uniform(50, 170), rng.uniform(2, 6)) + rng.uniform(0.2, 0.7) * resonator(
        x, rng.uniform(250, 800), rng.uniform(3, 8)
    )
    x = lowpass(x, rng.uniform(500, 2200))
    rumble = lowpass(rng.standard_normal(n), rng.uniform(120, 400))
    x = _unit(x) + rng.uniform(0.1, 0.4) * _unit(rumble)
    return x * (1 + 0.5 * load / max(float(load.max()), 1e-9)) if load.any() else x


def siren(rng: np.random.Generator, n: int, variant: str) -> np.ndarray:
    """Siren: harmonic tone swept in a wail, a yelp or a two-tone hi-lo pattern."""
    t = np.arange(n) / SR
    lo = rng.uniform(450, 850)
    hi = lo * rng.uniform(1.5, 2.3)
    offset = rng.uniform(0, 1)
    if variant == "wail":
        period = rng.uniform(1.8, 5.0)
        freq = lo + (hi - lo) * (0.5 - 0.5 * np.cos(2 * np.pi * (t / period + offset)))
    elif variant == "yelp":
        period = rng.uniform(0.12, 0.35)
        freq = lo + (hi - lo) * (0.5 - 0.5 * np.cos(2 * np.pi * (t / period + offset)))
    else:
        period = rng.uniform(0.7, 1.6)
        high = lo * rng.uniform(1.2, 1.45)
        freq = lowpass(np.where((t / period + offset) % 1.0 < 0.5, lo, high), 25.0)
    amp = np.ones(n)
    if rng.random() < 0.5:  # the vehicle drives past: pitch drops, loudness peaks
        t_pass = rng.uniform(0.3, 0.7) * t[-1]
        spread = rng.uniform(0.3, 1.0)
        freq = freq * (1 - rng.uniform(0.02, 0.06) * np.tanh((t - t_pass) / spread))
        amp = 1 / np.sqrt(1 + ((t - t_pass) / spread) ** 2)
    phase = 2 * np.pi * np.cumsum(freq) / SR
    harmonics = int(rng.choice([1, 3, 5, 7]))
    tilt = rng.uniform(1.0, 2.0)
    x = sum((1 / k**tilt) * np.sin(k * phase) for k in range(1, harmonics + 1, 2 if rng.random() < 0.6 else 1))
    return lowpass(x, 6000) * amp


def _impact(rng: np.random.Generator, surface: str, toe: bool) -> np.ndarray:
    """One heel (or toe) impact on ``surface``."""
    scale = 0.5 if toe else 1.0
    if surface == "gravel":  # crunch: a dense burst of tiny grains
        length = int(rng.uniform(0.08, 0.16) * SR * scale)
        count = int(rng.integers(40, 90))
        grains = impulse_train(length, rng.integers(0, length, count), rng.uniform(0.2, 1.0, count))
        crunch = highpass(convolve(grains, rng.standard_normal(24)), rng.uniform(700, 1800))
        return crunch * np.sin(np.pi * np.arange(length) / length) ** 0.7
    length = int(0.18 * SR)
    burst = rng.standard_normal(length) * decay(length, rng.uniform(0.004, 0.012) * (0.6 if toe else 1.0))
    if surface == "wood":
        thump = resonator(burst, rng.uniform(80, 220), rng.uniform(3, 6)) + 0.5 * resonator(
            burst, rng.uniform(400, 900), rng.uniform(4, 8)
        )
        return lowpass(thump, 2500)
    if surface == "tile":
        click = highpass(burst, rng.uniform(1000, 2500))
        ring = resonator(burst, rng.uniform(1500, 3800), rng.uniform(15, 40))
        return click + 0.6 * _unit(ring) * rms(click)
    thud = lowpass(burst, 180) * 3.0  # concrete: dull thud plus a scuffing click
    return thud + highpass(burst, rng.uniform(400, 1200))


def footsteps(rng: np.random.Generator, n: int, variant: str, tempo: str | None = None) -> np.ndarray:
    """Footsteps: heel-toe impacts on a surface at a walking tempo that drifts slightly."""
    lo, hi = STEP_INTERVALS[tempo]
    interval = rng.uniform(lo, hi)
    times = np.arange(rng.uniform(0.0, interval), n / SR, interval)
    times = times + rng.normal(0, 0.02 * interval, len(times))
    levels = np.linspace(rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0), len(times))  # approach or recede
    out = np.zeros(n)
    for i, (start, level) in enumerate(zip(times, levels, strict=True)):
        side = 1.0 if i % 2 == 0 else rng.uniform(0.7, 0.95)
        add_at(out, level * side * _impact(rng, variant, toe=False), int(start * SR))
        toe_at = start + rng.uniform(0.04, 0.1)
        add_at(out, level * side * rng.uniform(0.3, 0.6) * _impact(rng, variant, toe=True), int(toe_at * SR))
    return out


KNOCK_MODES = {  # (fundamental range in Hz, decay range in s) of the struck object
    "door": ((70.0, 170.0), (0.04, 0.12)),
    "table": ((200.0, 520.0), (0.03, 0.08)),
    "window": ((700.0, 1600.0), (0.08, 0.25)),
}


def knock(rng: np.random.Generator, n: int, variant: str) -> np.ndarray:
    """Knocking: groups of 2-5 damped resonant impacts (modes of the struck object)."""
    (f_lo, f_hi), (d_lo, d_hi) = KNOCK_MODES[variant]
    f1 = rng.uniform(f_lo, f_hi)
    ratios = np.array([1.0, rng.uniform(1.6, 2.5), rng.uniform(2.8, 4.3), rng.uniform(5.0, 7.0)])
    gains = np.array([1.0, rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.3)])
    t60 = rng.uniform(d_lo, d_hi)
    length = int(0.4 * SR)
    t = np.arange(length) / SR
    out = np.zeros(n)
    start = rng.uniform(0.05, 0.4)
    while start < n / SR - 0.2:
        count = int(rng.integers(2, 6))
        gap = rng.uniform(0.1, 0.22)
        for j in range(count):
            freqs = f1 * ratios * (1 + rng.normal(0, 0.01, 4))
            hit = sum(
                g * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * decay(length, t60 / (1 + m))
                for m, (f, g) in enumerate(zip(freqs, gains, strict=True))
                if f < SR / 2 * 0.9
            )
            click = highpass(rng.standard_normal(length) * decay(length, 0.003), 1500)
            hit = _unit(hit) + rng.uniform(0.2, 0.6) * _unit(click) * 0.3
            add_at(out, rng.uniform(0.7, 1.0) * hit, int((start + j * gap * rng.uniform(0.9, 1.1)) * SR))
        start += count * gap + rng.uniform(0.6, 1.4)
    return out


def _syllable(
    rng: np.random.Generator, shape: str, centre: float, dur: float, trill: tuple[float, float]
) -> np.ndarray:
    """One FM bird syllable of ``dur`` seconds around ``centre`` Hz."""
    length = max(int(dur * SR), 16)
    u = np.linspace(0, 1, length)
    if shape == "down":
        freq = centre * (1.4 - 0.7 * u)
    elif shape == "up":
        freq = centre * (0.75 + 0.6 * u)
    elif shape == "arch":
        freq = centre * (0.8 + 0.5 * np.sin(np.pi * u))
    else:  # trill or whistle: steady with frequency modulation
        freq = np.full(length, centre)
    rate, depth = trill
    freq = freq + depth * np.sin(2 * np.pi * rate * u * dur)
    freq = np.clip(freq, 1000, 7600)
    phase = 2 * np.pi * np.cumsum(freq) / SR
    env = np.sin(np.pi * u) ** rng.uniform(0.5, 2.0)
    return env * (np.sin(phase) + rng.uniform(0.0, 0.25) * np.sin(2 * phase))


def bird(rng: np.random.Generator, n: int, variant: str) -> np.ndarray:
    """Birdsong: one or several birds, each repeating phrases of FM syllables."""
    voices = 1 if variant == "single" else int(rng.integers(2, 5))
    out = np.zeros(n)
    for v in range(voices):
        shape = str(rng.choice(["down", "up", "arch", "trill", "whistle"]))
        centre = rng.uniform(2000, 6000)
        dur = rng.uniform(0.04, 0.09) if shape == "trill" else rng.uniform(0.05, 0.25)
        if shape == "trill":  # (FM rate in Hz, FM depth in Hz)
            trill = (rng.uniform(20, 60), rng.uniform(200, 900))
        else:
            trill = (rng.uniform(4, 12), rng.uniform(0, 150))
        level = 1.0 if v == 0 else rng.uniform(0.25, 0.8)
        start = rng.uniform(0.0, 0.6)
        while start < n / SR:
            for _ in range(int(rng.integers(2, 9))):
                syl = _syllable(rng, shape, centre * rng.uniform(0.97, 1.03), dur * rng.uniform(0.85, 1.15), trill)
                add_at(out, level * syl, int(start * SR))
                start += len(syl) / SR + rng.uniform(0.02, 0.12)
            start += rng.uniform(0.2, 1.0)
    return out


def wind(rng: np.random.Generator, n: int, variant: str) -> np.ndarray:
    """Wind: gusting low-passed noise plus howling resonances that rise with the gusts."""
    curve = 0.5 + 0.5 * smooth_curve(rng, n, rng.uniform(0.3, 1.2))
    if variant == "gusty":
        env = 0.1 + 0.9 * curve ** rng.uniform(1.5, 3.0)
    else:
        env = 0.75 + 0.25 * curve
    base = lowpass(rng.standard_normal(n), rng.uniform(150, 600))
    bright = bandpass(rng.standard_normal(n), rng.uniform(300, 800), rng.uniform(1200, 3000))
    howl = np.zeros(n)
    centres = np.sort(rng.uniform(250, 1400, 3))
    for i, fc in enumerate(centres):
        band = _unit(resonator(rng.standard_normal(n), fc, rng.uniform(6, 25)))
        weight = np.exp(-(((env - (i + 0.5) / 3) / 0.3) ** 2))  # stronger gusts excite higher bands
        howl += band * weight
    x = _unit(base) * (0.3 + env) + rng.uniform(0.2, 0.8) * _unit(bright) * env**2
    return x + rng.uniform(0.1, 0.6) * howl * env


BELL_PARTIALS = {
    "church": (0.5, 1.0, 1.19, 1.5, 2.0, 2.5, 2.67, 3.0, 4.17, 5.43),
    "hand": (1.0, 2.32, 4.25, 6.63, 9.38),
    "chimes": (1.0, 2.76, 5.40, 8.93),
}


def _bell_response(rng: np.random.Generator, n: int, f0: float, variant: str, t60: float) -> np.ndarray:
    t = np.arange(n) / SR
    out = np.zeros(n)
    for ratio in BELL_PARTIALS[variant]:
        f = f0 * ratio * (1 + rng.normal(0, 0.008))
        if f >= SR / 2 * 0.9:
            continue
        amp = rng.uniform(0.3, 1.0) / ratio**0.3
        out += amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * decay(n, t60 / ratio**0.6)
    return out


def bell(rng: np.random.Generator, n: int, variant: str) -> np.ndarray:
    """Bells: inharmonic decaying partials of a church bell, a handbell or wind chimes."""
    strikes: list[tuple[np.ndarray, np.ndarray]] = []  # (response, strike train) pairs
    if variant == "chimes":
        for _ in range(int(rng.integers(4, 8))):
            resp = _bell_response(rng, n, rng.uniform(900, 3200), "chimes", rng.uniform(0.8, 2.5))
            count = int(rng.poisson(rng.uniform(0.6, 2.0) * n / SR)) + 1
            strikes.append((resp, impulse_train(n, rng.integers(0, n, count), rng.uniform(0.3, 1.0, count))))
    elif variant == "hand":
        resp = _bell_response(rng, n, rng.uniform(700, 1800), "hand", rng.uniform(0.6, 1.8))
        if rng.random() < 0.5:  # shaken continuously
            times = np.arange(rng.uniform(0, 0.2), n / SR * rng.uniform(0.5, 1.0), 1 / rng.uniform(5, 11))
        else:
            times = np.sort(rng.uniform(0, n / SR * 0.4, int(rng.integers(1, 4))))
        strikes.append((resp, impulse_train(n, (times * SR).astype(int), rng.uniform(0.5, 1.0, len(times)))))
    else:
        resp = _bell_response(rng, n, rng.uniform(160, 480), "church", rng.uniform(2.5, 5.0))
        times = rng.uniform(0, 0.3) + np.arange(int(rng.integers(1, 4))) * rng.uniform(0.8, 1.6)
        strikes.append((resp, impulse_train(n, (times * SR).astype(int), rng.uniform(0.7, 1.0, len(times)))))
    out = np.zeros(n)
    for resp, train in strikes:
        out += convolve(train, resp)
    return out


SYNTHS = {
    "rain": rain,
    "engine": engine,
    "siren": siren,
    "knock": knock,
    "bird": bird,
    "wind": wind,
    "bell": bell,
}


def synthesize(
    label: str, rng: np.random.Generator, n: int, variant: str | None = None, tempo: str | None = None
) -> tuple[np.ndarray, str]:
    """Synthesise ``n`` samples of environmental class ``label`` at unit RMS.

    ``variant`` is drawn at random from :data:`VARIANTS` when not given; ``tempo``
    ("fast", "slow" or None) only affects footsteps. Returns ``(audio, variant)``.
    """
    if variant is None:
        variant = str(rng.choice(VARIANTS[label]))
    if label == "footsteps":
        x = footsteps(rng, n, variant, tempo)
    else:
        x = SYNTHS[label](rng, n, variant)
    return _unit(x - np.mean(x)), variant
