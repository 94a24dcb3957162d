"""Transformers models: the GPU path, and the reference for RoPE scaling variants llama.cpp lacks (dynamic NTK).

Greedy decoding is an explicit loop over ``past_key_values`` rather than ``model.generate`` so that prefill and
decode are timed apart, stop strings stream through :class:`StopScanner`, and the KV cache outlives the call:
a second question on the same document crops the cache to the shared prefix and only computes the rest.
Nothing is downloaded: hub ids must already be in the local cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from chatqa.weights import offline, resolve

offline()  # before transformers/huggingface_hub read it

import torch  # noqa: E402

from chatqa.config import GeneratorConfig  # noqa: E402
from chatqa.errors import ConfigError, InputError, ModelLoadError  # noqa: E402
from chatqa.generation import Generation, Generator, StopScanner, WordProbabilities, word_token_ids  # noqa: E402

PREFILL_CHUNK = 2048  # bounds prefill activations (and attention scratch) on long prompts
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def pick_dtype(name: str | None, cuda: bool) -> torch.dtype:
    """bf16 on a GPU (half the memory, no fp16 overflow), fp32 on a CPU where bf16 matmuls are slow or missing."""
    if name in (None, "", "auto"):
        return torch.bfloat16 if cuda else torch.float32
    full = DTYPES.get(name, name)
    if full not in DTYPES.values():
        raise ConfigError(f"unknown dtype '{name}' (auto, bf16, fp16, fp32)")
    return getattr(torch, full)


def locate(config: GeneratorConfig) -> tuple[str, dict[str, Any]]:
    """Where from_pretrained should look: (dir or hub id, kwargs); GGUF files are split into dir + gguf_file."""
    path = resolve(config.model)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if path.endswith(".gguf"):
        if not os.path.isfile(path):
            raise ModelLoadError(f"GGUF file not found: {path}")
        path, kwargs["gguf_file"] = os.path.split(os.path.abspath(path))
    elif config.gguf_file:
        kwargs["gguf_file"] = config.gguf_file
    return path, kwargs


def _load(what: str, loader: Callable[..., Any], path: str, **kwargs: Any) -> Any:
    """Turn transformers' many-line "not found" errors into one line a user can act on."""
    try:
        return loader(path, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        if not os.path.exists(path) and "gguf_file" not in kwargs:
            raise ModelLoadError(
                f"'{path}' is neither a local folder nor in the Hugging Face cache (nothing is downloaded at run "
                f"time: `hf download {path}` first, or use an embedded: model)"
            ) from None
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelLoadError(f"transformers could not load the {what} from '{path}': {detail}") from None


class HFTokenizer:
    """AutoTokenizer behind the Tokenizer protocol; encode/count exclude special tokens like the llamacpp one."""

    def __init__(self, config: GeneratorConfig) -> None:
        from transformers import AutoTokenizer

        path, kwargs = locate(config)
        self.tok = _load("tokenizer", AutoTokenizer.from_pretrained, path, **kwargs)
        self.id = f"hf:{config.model}" + (f"/{config.gguf_file}" if config.gguf_file else "")

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        if add_special and self.tok.bos_token and text.startswith(self.tok.bos_token):
            add_special = False  # chat templates already write the BOS text
        return self.tok.encode(text, add_special_tokens=add_special)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def count(self, text: str) -> int:
        """Special-token text in a document counts as the plain text it is (as llama.cpp's special=False does)."""
        return len(self.tok(text, add_special_tokens=False, split_special_tokens=True).input_ids)


def rope_parameters(model_config: Any, rope: dict | None) -> None:
    """Apply a profile's RoPE scaling as transformers 5 ``rope_parameters``, keeping the model's own theta.

    Models with per-layer-type RoPE (Gemma 3: local + global) only scale the full-attention layers, as Gemma's
    own long-context recipe does; sliding layers never see distances beyond their window.
    """
    if not rope:
        return
    kind, factor = rope.get("type", "linear"), float(rope.get("factor", 1.0))
    if kind not in ("linear", "dynamic", "yarn"):
        raise ModelLoadError(f"unknown rope type '{kind}' (linear, yarn, dynamic)")
    params = model_config.rope_parameters
    target = params.get("full_attention", params) if isinstance(params.get("full_attention"), dict) else params
    original = int(rope.get("original_context") or model_config.max_position_embeddings)
    update: dict[str, Any] = {"rope_type": kind, "factor": factor, "rope_theta": target["rope_theta"]}
    if kind == "yarn":
        update["original_max_position_embeddings"] = original
    target.update(update)
    # dynamic NTK rescales once sequences pass max_position_embeddings, so that must stay the trained length
    model_config.max_position_embeddings = original if kind == "dynamic" else int(original * factor)


class HFGenerator(Generator):
    def __init__(self, config: GeneratorConfig, tokenizer: HFTokenizer | None = None) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM

        self.config = config
        cuda = config.device == "cuda" or (config.device in (None, "auto") and torch.cuda.is_available())
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError("device: cuda was asked for, but torch sees no CUDA device")
        dtype = pick_dtype(config.dtype, cuda)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.tokenizer = tokenizer if isinstance(tokenizer, HFTokenizer) else HFTokenizer(config)
        path, kwargs = locate(config)
        model_config = _load("model config", AutoConfig.from_pretrained, path, **kwargs)
        rope_parameters(model_config, config.rope)
        kwargs["dtype"] = dtype
        if config.device == "auto":
            kwargs["device_map"] = "auto"
        self.model = _load("model", AutoModelForCausalLM.from_pretrained, path, config=model_config, **kwargs)
        if config.device != "auto":
            self.model.to("cuda" if cuda else "cpu")
        self.model.eval()
        self.device = self.model.get_input_embeddings().weight.device
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos = {t for t in [*eos, self.tokenizer.tok.eos_token_id] if t is not None}
        self._held: list[int] = []  # tokens whose keys/values are in self._cache, in order
        self._cache: Any = None

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if not self.tokenizer.tok.chat_template:
            return super().render_chat(messages)
        return self.tokenizer.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Feed tokens through the model, extending the held cache; returns the last position's logits."""
        try:
            for i in range(0, len(ids), PREFILL_CHUNK):
                chunk = torch.tensor([ids[i : i + PREFILL_CHUNK]], device=self.device)
                out = self.model(input_ids=chunk, past_key_values=self._cache, use_cache=True, logits_to_keep=1)
                self._held.extend(ids[i : i + PREFILL_CHUNK])
        except BaseException:  # a half-updated cache (Ctrl-C, out of memory) no longer matches self._held
            self._cache, self._held = None, []
            raise
        return out.logits[0, -1]

    def _reuse(self, ids: list[int]) -> int:
        """Crop the held cache to the longest common prefix (leaving one token to compute); returns its length.

        The cache is a plain DynamicCache even for sliding-window models (Gemma 3): their sliding layers would drop
        old keys and could then never be cropped back into a long document, which is exactly where a second
        question diverges. The attention masks still apply the window, so outputs are unchanged; memory grows.
        """
        from transformers import DynamicCache

        n = 0
        for a, b in zip(self._held, ids[: len(ids) - 1], strict=False):
            if a != b:
                break
            n += 1
        if self._cache is not None and n > 0:
            if n < len(self._held):  # a negative count removes that many tokens (transformers 4.4x and 5)
                self._cache.crop(n - len(self._held))
            self._held = self._held[:n]
            return n
        self._cache, self._held = DynamicCache(), []
        return 0

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
        prefix: str | None = None,  # the KV-cache hint; only llama.cpp stores prefix states
        on_prefill: Callable[[int, int], None] | None = None,  # llama.cpp only: the prompt is read in one step
    ) -> Generation:
        ids = self.tokenizer.encode(prompt, add_special=True)
        if not ids:
            raise InputError("the prompt is empty")
        self.check_fits(len(ids), max_new_tokens)
        scanner = StopScanner(stop, on_text)
        out: list[int] = []
        text, finish = "", "length"
        with torch.inference_mode():
            start = time.perf_counter()
            cached = self._reuse(ids)
            token = int(self._forward(ids[cached:]).argmax())
            first = self._sync()
            while max_new_tokens > 0:
                if token in self.eos:
                    finish = "eos"
                    break
                out.append(token)
                text = self.tokenizer.decode(out)
                if not text.endswith("\ufffd"):  # else half of a multi-byte character: wait for the rest
                    final = scanner.feed(text)
                    if final is not None:
                        text, finish = final, "stop"
                        break
                if len(out) >= max_new_tokens:
                    break
                token = int(self._forward([token]).argmax())
        if finish != "stop":
            text = scanner.finish(text)
        end = self._sync()
        return Generation(text.strip(), len(ids), len(out), first - start, end - first, finish, cached)

    def word_probabilities(self, prompt: str, words: Sequence[str]) -> WordProbabilities:
        """The prompt read as :meth:`generate` reads it (reusing the held cache), then a softmax of the last
        position's logits: each word's probability is the mass of its single-token spellings."""
        ids = self.tokenizer.encode(prompt, add_special=True)
        if not ids:
            raise InputError("the prompt is empty")
        self.check_fits(len(ids), 1)
        with torch.inference_mode():
            start = time.perf_counter()
            cached = self._reuse(ids)
            probs = torch.softmax(self._forward(ids[cached:]).double(), dim=-1)
            end = self._sync()
        ids_of = [word_token_ids(self.tokenizer.encode, w, self.name) for w in words]
        out = [float(probs[sorted(word_ids)].sum()) for word_ids in ids_of]
        return WordProbabilities(out, len(ids), end - start, cached)

    def close(self) -> None:
        self._cache, self._held = None, []
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_tokenizer(config: GeneratorConfig) -> HFTokenizer:
    return HFTokenizer(config)


def load_generator(config: GeneratorConfig, tokenizer: object | None = None, state_dir: object = None) -> HFGenerator:
    return HFGenerator(config, tokenizer if isinstance(tokenizer, HFTokenizer) else None)
