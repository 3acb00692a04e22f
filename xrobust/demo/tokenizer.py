"""The demo world's tokenizer: a small XLM-R-compatible tokenizer built offline.

Everything here runs without the Hugging Face hub: a SentencePiece unigram model is trained on
the given sentences and converted to the tokenizers-backed (fast) `XLMRobertaTokenizer`, which
is what the featurizers need for offset mappings.

How the conversion works in transformers 5: `XLMRobertaTokenizer` is itself the fast
(tokenizers-backed) class; `XLMRobertaTokenizer(vocab_file=...)` does NOT convert a `.model` file,
but `XLMRobertaTokenizer.from_pretrained(dir)` does when `dir` holds `sentencepiece.bpe.model`
(slow-to-fast conversion through `XLMRobertaConverter`, needs only `sentencepiece` and
`protobuf`). The converter assumes SentencePiece's default layout (<unk>=0, <s>=1, </s>=2) and
re-maps it to the fairseq/XLM-R layout (<s>=0, <pad>=1, </s>=2, <unk>=3, pieces shifted by one,
<mask> last), so the trainer below keeps SentencePiece's default special ids.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable

from xrobust.errors import DataError
from xrobust.io import atomic_directory

SP_MODEL_NAME = "sentencepiece.bpe.model"


def train_sentencepiece_tokenizer(sentences: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 500):
    """Train a unigram SentencePiece model on `sentences` and save an XLM-R tokenizer to `out_dir`.

    Returns the fast tokenizer; `AutoTokenizer.from_pretrained(out_dir)` loads the same one.
    `vocab_size` is a soft limit (a small corpus may not support it); the result has
    vocab_size + 2 entries at most (<pad> and <mask> are added by the XLM-R layout).
    """
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer

    sentences = [s for s in sentences if isinstance(s, str) and s.strip()]
    if not sentences:
        raise DataError("train_sentencepiece_tokenizer: no non-empty sentences given; expected a list of str")
    if vocab_size < 8:
        raise DataError(f"train_sentencepiece_tokenizer: vocab_size={vocab_size} is too small; expected >= 8")

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,  # keep every script's characters: the corpus is multilingual
        hard_vocab_limit=False,  # tiny corpora cannot always reach vocab_size
        num_threads=1,  # single thread keeps training deterministic
        minloglevel=2,
        # defaults unk=0, bos=1, eos=2, pad=-1: the layout XLMRobertaConverter expects
    )

    out_dir = Path(out_dir)
    # Build everything in a temp dir that replaces out_dir whole: a crash never leaves a
    # half-written tokenizer that AutoTokenizer would load.
    with atomic_directory(out_dir) as tmp:
        (tmp / SP_MODEL_NAME).write_bytes(buf.getvalue())
        tokenizer = XLMRobertaTokenizer.from_pretrained(str(tmp))
        if not tokenizer.is_fast or len(tokenizer) <= 5:
            raise DataError(
                f"train_sentencepiece_tokenizer: converting {SP_MODEL_NAME} to a fast tokenizer failed "
                f"(vocabulary has {len(tokenizer)} entries); expected the SentencePiece pieces"
            )
        tokenizer.save_pretrained(str(tmp))
    # Reload from out_dir so the returned object is exactly what later runs will load.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(out_dir))
