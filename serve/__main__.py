"""Serve a SentenceTransformer folder at /v1/embeddings with Ray Serve until interrupted.

    python -m serve ./nvembed [--host 127.0.0.1] [--port 8000] [--address ray://HEAD:10001] [--replicas N]
        [--max-batch-size 32] [--batch-wait-ms 5] [--max-inputs 256] [--max-tokens N] [--max-request-bytes 2097152]

Without `--address` a local Ray instance is started; with one, the replicas run on that cluster (one GPU each where it
has GPUs), whose nodes see MODEL at the same absolute path. The HTTP proxy then runs on the cluster's head node: pass
`--host 0.0.0.0` to reach it from other machines.
"""

import argparse
import logging
import os
import signal
import time


logger = logging.getLogger(__name__)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a SentenceTransformer folder (an NV-Embed export, or any other)")
    parser.add_argument("--name", default=None, help="the `model` clients pass; default: the folder's name")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--address", default=None, help="ray://HEAD:10001 or HOST:6379; default: local Ray")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--cpus-per-replica", type=float, default=1, help="also its torch threads on CPU")
    parser.add_argument("--gpus-per-replica", type=float, default=None, help="default: 1 if the cluster has GPUs")
    parser.add_argument("--max-batch-size", type=int, default=32, help="texts per forward pass; 1: no batching")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    parser.add_argument("--max-inputs", type=int, default=256, help="texts per request")
    parser.add_argument("--max-tokens", type=int, default=None, help="per text; default: the model's max_seq_length")
    parser.add_argument("--max-request-bytes", type=int, default=2 << 20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import ray
    from ray import serve

    from serve.app import build_app

    ray.init(address=args.address)
    gpus = args.gpus_per_replica
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) else 0
    serve.start(http_options={"host": args.host, "port": args.port})
    app = build_app(
        os.path.abspath(args.model),
        num_replicas=args.replicas,
        num_cpus=args.cpus_per_replica,
        num_gpus=gpus,
        model_name=args.name,
        max_batch_size=args.max_batch_size,
        batch_wait_timeout_s=args.batch_wait_ms / 1000,
        max_inputs=args.max_inputs,
        max_tokens=args.max_tokens,
        max_request_bytes=args.max_request_bytes,
        threads=max(1, int(args.cpus_per_replica)),
    )
    serve.run(app, name="nvembed", route_prefix="/")
    logger.info("serving on http://%s:%d/v1/embeddings (health: /health); Ctrl-C stops", args.host, args.port)
    signal.signal(signal.SIGTERM, _interrupt)  # as a service manager or `kill` stops it; Ctrl-C is SIGINT
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("shutting down")
    finally:
        serve.shutdown()
        ray.shutdown()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
