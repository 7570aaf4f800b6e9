"""Several ``vllm bench serve`` runs in one Python process: importing vLLM takes ~8 s on 2 cores, longer than many
a run. Runs inside vLLM's environment (the lab's vLLM virtualenv, or vLLM's image): it imports vLLM's benchmark and
nothing of the lab.

usage: python bench_runs.py PLAN.json
PLAN: {"runs": [[arguments of `vllm bench serve`], ...], "saturated_below": 0.8 or null}. The runs go in order;
with ``saturated_below``, the sweep stops after the first run that served less than that share of its offered
request rate. Each run saves its result JSON where its own ``--result-dir``/``--result-filename`` say.
"""
import json
import sys


def read_streams_by_line() -> None:
    """vLLM's benchmark client strips every fragment of a streamed response before it puts the SSE events back
    together, so an event the network splits right after ``data:`` loses its space and the request counts as
    failed (vllm-project/vllm#51172, open). Its client gets whole lines instead: aiohttp's ``iter_any``, which it
    reads the stream with, yields what ``readline`` returns."""
    from aiohttp import streams

    streams.StreamReader.iter_any = lambda self: streams.AsyncStreamIterator(self.readline)


def main(plan_path: str) -> None:
    from vllm import platforms
    from vllm.benchmarks.serve import add_cli_args, main as bench_serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    if platforms.current_platform.is_unspecified():  # as `vllm bench` does: no accelerator is needed to send requests
        from vllm.platforms.cpu import CpuPlatform

        platforms.current_platform = CpuPlatform()
    plan = json.loads(open(plan_path).read())
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    for argv in plan["runs"]:
        args = parser.parse_args(argv)
        result = bench_serve(args)
        if plan.get("saturated_below") and result["request_throughput"] < plan["saturated_below"] * args.request_rate:
            break


if __name__ == "__main__":
    read_streams_by_line()
    main(sys.argv[1])
