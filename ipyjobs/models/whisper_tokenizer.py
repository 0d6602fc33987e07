"""A Hugging Face ``tokenizer.json`` for a Whisper model, built offline from openai-whisper's own
vocabulary files (``whisper/assets/gpt2.tiktoken`` or ``multilingual.tiktoken``).

faster-whisper reads ``tokenizer.json`` from the model folder (else it downloads one from the
Hugging Face hub, which closed networks and offline mode cannot). A tiktoken file lists byte
strings with their merge rank; a byte-level BPE tokenizer needs the vocabulary in GPT-2's
byte-to-unicode spelling plus the merge rules, which follow from the ranks: each token is the
merge of the two pieces BPE reaches when it may use only lower ranks. Special tokens get the ids
whisper gives them, so token ids match openai-whisper's exactly.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def _byte_spelling() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    spelling = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in spelling:
            spelling[b] = chr(256 + extra)
            extra += 1
    return spelling


def _spell(token: bytes) -> str:
    spelling = _byte_spelling()
    return "".join(spelling[b] for b in token)


def _merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two pieces byte-level BPE joins to make ``token``, using only lower ranks."""
    limit = ranks[token]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best: tuple[int, int] | None = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < limit and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} is not a merge of two lower-ranked tokens")
    return parts[0], parts[1]


def _ranks(multilingual: bool) -> tuple[Path, dict[bytes, int]]:
    import whisper.tokenizer
    from tiktoken.load import load_tiktoken_bpe

    name = "multilingual" if multilingual else "gpt2"
    asset = Path(whisper.tokenizer.__file__).parent / "assets" / f"{name}.tiktoken"
    return asset, load_tiktoken_bpe(str(asset))


def _specials(multilingual: bool, num_languages: int) -> dict[str, int]:
    """whisper's special tokens (text -> id), timestamps included."""
    import whisper.tokenizer

    return whisper.tokenizer.get_tokenizer(multilingual, num_languages=num_languages).special_tokens


def build_tokenizer_json(multilingual: bool, num_languages: int, out: Path) -> None:
    """Write ``tokenizer.json`` for a Whisper model to ``out``.

    ``multilingual`` picks the vocabulary (``multilingual.tiktoken`` or ``gpt2.tiktoken``);
    ``num_languages`` says how many language tokens the model has (99, or 100 for large-v3).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    asset, ranks = _ranks(multilingual)
    vocab = {_spell(token): rank for token, rank in ranks.items()}
    merges: list[tuple[str, str]] = []
    for token, _ in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            left, right = _merge_of(token, ranks)
            merges.append((_spell(left), _spell(right)))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    ordered = sorted(
        (token_id, text) for text, token_id in _specials(multilingual, num_languages).items()
        if not text[2:3].isdigit()  # timestamps are arithmetic in faster-whisper, not tokens
    )  # fmt: skip
    if [token_id for token_id, _ in ordered] != list(range(len(vocab), len(vocab) + len(ordered))):
        raise ValueError(f"{asset}: whisper's special tokens do not follow the vocabulary")
    tokenizer.add_special_tokens(
        [AddedToken(text, special=True, normalized=False) for _, text in ordered]
    )
    tokenizer.save(str(out))


def vocabulary(multilingual: bool, num_languages: int, n_vocab: int) -> list[str]:
    """CTranslate2's vocabulary for the model: every id's token text, timestamps included."""
    _, ranks = _ranks(multilingual)
    tokens = [_spell(token) for token, _ in sorted(ranks.items(), key=lambda item: item[1])]
    by_id = {token_id: text for text, token_id in _specials(multilingual, num_languages).items()}
    tokens += [by_id[i] for i in range(len(tokens), n_vocab)]
    return tokens
