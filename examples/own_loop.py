"""A head of your own, trained in a plain PyTorch loop on fsv's episodes and scored on the fixed
test episodes that `fsv eval` uses (fsv.api).

    python examples/own_loop.py --manifest MANIFEST --store STORE [--way 5 --shot 1 --episodes 2000]

The head: a linear map of the pooled frame features, a temporal convolution, the steps kept in
order (flattened), and prototypes compared by scaled cosine similarity.
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from fsv.api import Episodes, evaluate_logits


class OrderedPrototypes(nn.Module):
    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.conv = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1)
        self.scale = nn.Parameter(torch.tensor(10.0))

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # [N, T, D] -> [N, T * hidden]
        h = F.relu(self.proj(x)).transpose(1, 2)  # [N, hidden, T]
        return F.normalize(F.relu(self.conv(h)).flatten(1), dim=-1)

    def forward(self, support, support_labels, query, way):  # -> logits [Q, way]
        s, q = self.embed(support), self.embed(query)
        protos = F.normalize(torch.stack([s[support_labels == c].mean(0) for c in range(way)]), dim=-1)
        return self.scale * q @ protos.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--way", type=int, default=5)
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--query", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--test-episodes", type=int, default=10000)
    args = parser.parse_args()
    torch.manual_seed(0)
    sizes = dict(way=args.way, shot=args.shot, query=args.query)
    train = Episodes(args.manifest, [args.store], "train", count=args.episodes, **sizes)
    head = OrderedPrototypes(train.bank.feature_shape[-1])
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for ep in train:  # a DataLoader(train, batch_size=None, num_workers=...) works the same
        ep = ep.to(torch.device("cpu"))
        loss = F.cross_entropy(head(ep.support, ep.support_labels, ep.query, ep.way), ep.query_labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    result = evaluate_logits(
        head,
        args.manifest,
        [args.store],
        episodes=args.test_episodes,
        name="ordered-prototypes",
        device="cpu",
        **sizes,
    )
    print(f"{result.head}: {100 * result.accuracy:.2f} ± {100 * result.ci95:.2f} % on {result.episodes} test episodes")
    print(f"episode file: {result.episode_file}")


if __name__ == "__main__":
    main()
