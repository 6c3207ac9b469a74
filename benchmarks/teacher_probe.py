"""How much of the teacher's vector does a model's vector hold? A linear probe on broad text no run trains on.

For each model, plain `encode()` (no prompt, 64 tokens) of broad *train* texts is mapped onto the bundled
all-MiniLM-L6-v2's vectors of the same texts by ridge regression (closed form); the map is then scored on broad *dev*
texts (train/data/broad.py: documents split by hash, never trained on) as the mean cosine between the mapped vector
and the teacher's, and as the Spearman agreement of the model's own plain cosines with the teacher's on random dev
pairs. A run trained with `vector_weight` (train.losses.TeacherVectorLoss) also gets the cosine through its own saved
projection (`teacher_projection.safetensors` of its last stage).

High probe cosine with low cosine agreement: the model holds the teacher's information but arranges it its own way.

    python benchmarks/teacher_probe.py train-s7=runs/levers/train-s7/final train-vec=runs/levers/train-vec/final
"""

import argparse
import random
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIT_TEXTS, DEV_TEXTS, DEV_PAIRS = 2000, 600, 3000


def mean_cosine(a, b) -> float:
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="name=folder")
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=1.0, help="ridge penalty")
    args = parser.parse_args(argv)
    import numpy as np
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from nvembed_defaults import peer_model_path
    from train.data.broad import broad_texts
    from train.losses import ridge
    from train.pipeline import PROJECTION_FILE

    fit, dev = broad_texts("train", limit=FIT_TEXTS), broad_texts("dev", limit=DEV_TEXTS)
    rng = random.Random(0)
    pairs = [tuple(rng.sample(range(len(dev)), 2)) for _ in range(DEV_PAIRS)]
    teacher = SentenceTransformer(str(peer_model_path()), device="cpu")
    teacher.max_seq_length = args.max_seq_length
    t_fit = teacher.encode(fit, batch_size=64, normalize_embeddings=True)
    t_dev = teacher.encode(dev, batch_size=64, normalize_embeddings=True)
    t_pair = np.array([t_dev[i] @ t_dev[j] for i, j in pairs])
    print(
        f"{len(fit)} fit texts (broad train), {len(dev)} dev texts, {len(pairs)} dev pairs, "
        f"{args.max_seq_length} tokens"
    )
    rows = []
    for spec in args.models:
        name, _, folder = spec.partition("=")
        model = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
        model.max_seq_length = args.max_seq_length
        s_fit = model.encode(fit, batch_size=32)
        s_dev = model.encode(dev, batch_size=32)
        w, b = (t.numpy() for t in ridge(s_fit, t_fit, args.alpha))
        probe = mean_cosine(s_dev @ w + b, t_dev)
        unit = s_dev / np.linalg.norm(s_dev, axis=1, keepdims=True)
        agreement = spearmanr([unit[i] @ unit[j] for i, j in pairs], t_pair).statistic
        own = "-"
        projections = sorted(Path(folder).parent.glob(f"stage*/final/{PROJECTION_FILE}"))
        if projections:
            from safetensors.numpy import load_file

            saved = load_file(str(projections[-1]))
            own = f"{mean_cosine(s_dev @ saved['weight'].T + saved['bias'], t_dev):.3f}"
        rows.append((name, probe, own, agreement))
        print(name, f"probe {probe:.3f}", f"own projection {own}", f"cosine agreement {agreement:.3f}", flush=True)
    print("\n| model | ridge probe cosine (dev) | own projection cosine (dev) | plain cosine agreement (Spearman) |")
    print("|---|---:|---:|---:|")
    for name, probe, own, agreement in rows:
        print(f"| {name} | {probe:.3f} | {own} | {agreement:.3f} |")


if __name__ == "__main__":
    main()
