"""Run the mock server as its own process: python3 -m mock_llm_server --port 18080."""

import argparse

from .server import MockConfig, serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="mock_llm_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the listening socket"
    )
    parser.add_argument(
        "--event-loop",
        choices=["auto", "asyncio", "uvloop"],
        default="asyncio",
        help="asyncio (default) keeps the mock on time; uvloop measured worse here "
        "(its timers count whole milliseconds); auto: uvloop when installed",
    )
    parser.add_argument("--ttft-ms", type=float, default=MockConfig.ttft_ms)
    parser.add_argument("--itl-ms", type=float, default=MockConfig.itl_ms)
    parser.add_argument("--output-tokens", type=int, default=MockConfig.output_tokens)
    parser.add_argument(
        "--usage",
        choices=["auto", "on", "off"],
        default="auto",
        help="auto follows stream_options.include_usage",
    )
    parser.add_argument(
        "--tokenize",
        choices=["vllm", "llamacpp", "none"],
        default=MockConfig.tokenize,
        help="which tokenize endpoint to imitate (none: 404)",
    )
    args = parser.parse_args()
    usage = {"auto": None, "on": True, "off": False}[args.usage]
    defaults = MockConfig(
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        output_tokens=args.output_tokens,
        usage=usage,
        tokenize=args.tokenize,
    )
    serve(args.host, args.port, defaults, workers=args.workers, event_loop=args.event_loop)


if __name__ == "__main__":
    main()
