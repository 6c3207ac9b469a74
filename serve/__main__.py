"""Serve a SentenceTransformer folder at /v1/embeddings with Ray Serve until interrupted (Ctrl-C or SIGTERM).

    python -m serve ./nvembed [--host 127.0.0.1] [--port 8000] [--address ray://HEAD:10001] [--replicas N]
        [--max-batch-tokens 16384] [--max-batch-size 32] [--batch-wait-ms 5] [--max-inputs 256] [--max-tokens N]
        [--max-request-tokens N] [--max-request-bytes 2097152] [--max-concurrent-requests 512]
        [--request-timeout-s 60] [--api-key KEY] [--app-name nvembed] [--route-prefix /]

Without `--address` a local Ray instance is started, and stopped on exit; with one, the replicas run on that cluster
(one GPU each where it has GPUs), whose nodes see MODEL at the same absolute path, and on exit only this server's app
(`--app-name`) is deleted: other Serve apps on the cluster keep running. The HTTP proxy then runs on the cluster's head
node: pass `--host 0.0.0.0` to reach it from other machines. The API key may come from the environment
(NVEMBED_API_KEY) instead of the command line, where `ps` shows it.
"""

import argparse
import hashlib
import logging
import os
import signal
import time


logger = logging.getLogger(__name__)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a SentenceTransformer folder (an NV-Embed export, or any other)")
    parser.add_argument("--name", default=None, help="the `model` clients pass; default: the folder's name")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--address", default=None, help="ray://HEAD:10001 or HOST:6379; default: local Ray")
    parser.add_argument("--app-name", default="nvembed", help="the Serve app's name (what shutdown deletes)")
    parser.add_argument("--route-prefix", default="/", help="where the app's routes start, e.g. /nvembed")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--cpus-per-replica", type=float, default=1, help="also its torch threads on CPU")
    parser.add_argument("--gpus-per-replica", type=float, default=None, help="default: 1 if the cluster has GPUs")
    parser.add_argument("--max-batch-tokens", type=int, default=16384, help="padded tokens per forward pass")
    parser.add_argument("--max-batch-size", type=int, default=32, help="texts per forward pass; 1: no batching")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    parser.add_argument("--max-inputs", type=int, default=256, help="texts per request")
    parser.add_argument("--max-tokens", type=int, default=None, help="per text; default: the model's max_seq_length")
    parser.add_argument("--max-request-tokens", type=int, default=None, help="default: max-inputs x max-tokens")
    parser.add_argument("--max-request-bytes", type=int, default=2 << 20)
    parser.add_argument("--max-concurrent-requests", type=int, default=512, help="per replica; more get 429")
    parser.add_argument("--max-queued-requests", type=int, default=None, help="in Ray's router; more get 503")
    parser.add_argument("--request-timeout-s", type=float, default=60.0, help="slower requests get 503")
    parser.add_argument("--tokenization-workers", type=int, default=1, help="tokenizer threads per replica")
    parser.add_argument(
        "--api-key", default=os.environ.get("NVEMBED_API_KEY"), help="bearer key for /v1/*; default: $NVEMBED_API_KEY"
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import ray
    from ray import serve

    from serve.app import build_app

    # Ray Serve gives its HTTP proxy 5 s to answer a readiness check, 3 times; on a busy host (2 cores that a corpus
    # job or training saturates) its start-up takes longer, and Serve kills and restarts it until serve.start fails.
    # A local cluster started here inherits this; an operator's own setting wins.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
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
        max_queued_requests=args.max_queued_requests,
        model_name=args.name,
        max_batch_size=args.max_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        batch_wait_timeout_s=args.batch_wait_ms / 1000,
        max_inputs=args.max_inputs,
        max_tokens=args.max_tokens,
        max_request_tokens=args.max_request_tokens,
        max_request_bytes=args.max_request_bytes,
        max_concurrent_requests=args.max_concurrent_requests,
        request_timeout_s=args.request_timeout_s,
        api_key_sha256=hashlib.sha256(args.api_key.encode()).hexdigest() if args.api_key else None,
        threads=max(1, int(args.cpus_per_replica)),
        tokenization_workers=args.tokenization_workers,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # as a service manager or `kill` stops it; Ctrl-C is SIGINT
    try:
        serve.run(app, name=args.app_name, route_prefix=args.route_prefix)
        route = args.route_prefix.rstrip("/")
        logger.info("serving on http://%s:%d%s/v1/embeddings (health: %s/health, metrics: %s/metrics); Ctrl-C stops",
                    args.host, args.port, route, route, route)  # fmt: skip
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("shutting down")
    finally:
        stop(args.app_name, own_cluster=args.address is None)


def stop(app_name: str, own_cluster: bool) -> None:
    """On a cluster of our own, stop Serve and Ray; on a shared one, delete only our app (`serve.shutdown()` would
    remove every Serve app on it)."""
    import ray
    from ray import serve

    if own_cluster:
        serve.shutdown()
    else:
        serve.delete(app_name)
    ray.shutdown()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
