"""Forward time of `transformers`' PerceiverForImageClassificationFourier with the published
`deepmind/vision-perceiver-fourier` configuration, random
weights, batch 1, 224 x 224, on the CPU. The side-by-side partner of the `HF Fourier forward`
point of `cargo xtask bench` and of
`cargo run --release -p perceiver-model --example model_timing -- perceiver-io-imagenet 1 N forward`.

    python hf_fourier_torch.py [--iters N] [--threads T]

Prints the parameter count and the median forward time (ms) over N timed runs after 2 warm-ups.
"""
import argparse
import statistics
import time

import torch
from transformers import PerceiverConfig, PerceiverForImageClassificationFourier


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    # The published deepmind/vision-perceiver-fourier settings (config.json on the hub).
    config = PerceiverConfig(
        d_latents=1024,
        d_model=261,
        num_latents=512,
        num_blocks=8,
        num_self_attends_per_block=6,
        num_self_attention_heads=8,
        num_cross_attention_heads=1,
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
        num_labels=1000,
        image_size=224,
    )
    model = PerceiverForImageClassificationFourier(config).eval()
    x = torch.randn(1, 3, 224, 224)
    times = []
    with torch.inference_mode():
        for i in range(a.iters + 2):
            t = time.perf_counter()
            model(inputs=x)
            if i >= 2:
                times.append(time.perf_counter() - t)
    params = sum(q.numel() for q in model.parameters())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads: "
        f"{params} parameters, forward median {1e3 * statistics.median(times):.1f} ms "
        f"(min {1e3 * min(times):.1f}, {a.iters} runs)"
    )


if __name__ == "__main__":
    main()
