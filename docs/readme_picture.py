"""Draw the README's picture, docs/attention.png, with the course's own code: two attention heads of the packaged
all-MiniLM-L6-v2 on notebook 11's sentence pair, chosen as notebook 11 chooses them (the head that reads the
previous token the most, and the one that reads the next token the most). Run with `make picture`."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from minibert import BertModel, BertTokenizer, viz  # noqa: E402

SENTENCE_A = "The cat sat on the mat because it was warm."  # notebook 11's pair
SENTENCE_B = "It did not move all afternoon."
OUT = Path(__file__).resolve().parent / "attention.png"


def main() -> None:
    model, tokenizer = BertModel.from_pretrained(None).eval(), BertTokenizer.from_pretrained(None)
    result = viz.get_attention(model, tokenizer, SENTENCE_A, SENTENCE_B)
    attn = torch.stack([a[0] for a in result.attentions])  # (layers, heads, seq, seq)
    previous = attn.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)  # reading token i-1, averaged over the pair
    following = attn.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1)  # reading token i+1
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), dpi=72)
    for ax, (scores, what) in zip(axes, ((previous, "reads the previous token"), (following, "reads the next token"))):
        layer, head = divmod(int(scores.argmax()), scores.shape[1])
        viz.plot_attention(result, layer, head, ax=ax)
        ax.set_title(f"layer {layer}, head {head}: {what} ({scores[layer, head]:.0%})")
    fig.suptitle("What BERT looks at: two attention heads of all-MiniLM-L6-v2 (notebook 11)")
    fig.tight_layout()
    fig.savefig(OUT, bbox_inches="tight")
    print(f"{OUT.name}: {OUT.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
