"""Load generation: the plan, its shards over worker processes, and the run itself.

A run has a plan of requests, each with a planned send time (rate modes) or a slot
(concurrency mode). The plan is split over worker processes so the client never
runs out of CPU; every request records how late it left compared to the plan
(scheduling lag), so a client bottleneck shows in the data instead of hiding.

All workers share one start time on the CLOCK_MONOTONIC timeline
(``time.perf_counter_ns`` on Linux), fixed after every worker finished its warm-up.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import resource
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Optional
from urllib.parse import urlsplit

from . import config as config_mod
from . import loops
from . import prompts as prompts_mod
from . import tokens as tokens_mod
from .client import Pool, build_request, proxy_for, send

# Optional: evaluated at import, and ansible-test's pylint reads target code as Python 3.8.
ProgressFn = Callable[[int, Optional[int]], None]  # noqa: UP045
_PROGRESS_EVERY_S = 0.25
_START_DELAY_NS = 30_000_000  # time for every worker to get the start message
_WORKER_GRACE_S = 10.0


def auto_workers(cfg: dict) -> int:
    """One process per ~32 streams (or ~50 req/s), at most one per CPU."""
    if cfg["workers"]:
        return cfg["workers"]
    cpus = os.cpu_count() or 1
    if cfg["mode"] == "concurrency":
        need = math.ceil(cfg["concurrency"] / 32)
    else:
        need = math.ceil(cfg["rate"] / 50)
    return max(1, min(cpus, need))


def planned_offsets_ns(cfg: dict) -> list[int] | None:
    """Send times (ns after the start) for rate modes; None for concurrency mode."""
    if cfg["mode"] == "concurrency":
        return None
    rate = cfg["rate"]
    limit = cfg["num_requests"]
    horizon = cfg["duration_s"]
    rng = random.Random(cfg["seed"])  # noqa: S311 - arrival times, not security
    offsets: list[int] = []
    t = 0.0
    while True:
        if limit is not None and len(offsets) >= limit:
            break
        if horizon is not None and t >= horizon:
            break
        offsets.append(round(t * 1e9))
        t += rng.expovariate(rate) if cfg["mode"] == "poisson" else 1.0 / rate
    return offsets


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def make_shards(cfg: dict) -> list[dict]:
    """Split the plan into per-worker shards; empty shards are dropped."""
    workers = auto_workers(cfg)
    offsets = planned_offsets_ns(cfg)
    if cfg["mode"] == "concurrency":
        workers = min(workers, cfg["concurrency"])
    shards = []
    for i in range(workers):
        shard = {
            "index": i,
            "workers": workers,
            "warmup": _split(cfg["warmup_requests"], workers, i),
        }
        if offsets is None:
            shard["concurrency"] = _split(cfg["concurrency"], workers, i)
            if cfg["num_requests"] is not None:
                shard["num_requests"] = _split(cfg["num_requests"], workers, i)
                if not shard["num_requests"]:
                    continue
        else:
            shard["offsets"] = offsets[i::workers]
            if not shard["offsets"]:
                continue
        shards.append(shard)
    return shards


_FD_MARGIN = 64  # files a worker holds besides its connections (pipes, logs, imports)


def check_limits(cfg: dict) -> None:
    """Refuse up front what cannot work on this host: more streams per worker than the
    open-file limit allows (each stream is a connection), or a proxy we cannot use."""
    shards = make_shards(cfg)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if cfg["mode"] == "concurrency":
        per_worker = max(s["concurrency"] for s in shards)
        what = f"concurrency {cfg['concurrency']} over {len(shards)} worker(s)"
    else:  # in flight at most: every request of the timeout window
        in_flight = math.ceil(cfg["rate"] * cfg["request_timeout_s"])
        per_worker = math.ceil(in_flight / len(shards))
        what = f"rate {cfg['rate']:g}/s with request_timeout_s {cfg['request_timeout_s']:g}"
    need = per_worker + _FD_MARGIN
    if soft != resource.RLIM_INFINITY and need > soft:
        raise config_mod.ConfigError(
            f"{what} needs up to {need} open files per worker process, but the open-file "
            f"limit (RLIMIT_NOFILE) here is {soft}: lower the concurrency, add workers, or "
            "raise the limit (ulimit -n, systemd LimitNOFILE=)"
        )
    parts = urlsplit(cfg["base_url"])
    try:
        proxy_for(parts.scheme == "https", parts.hostname or "", parts.port or 0)
    except ValueError as exc:
        raise config_mod.ConfigError(str(exc)) from exc


def plan(cfg: dict) -> dict:
    """What a run would do, without sending anything (check mode)."""
    check_limits(cfg)
    shards = make_shards(cfg)
    offsets = planned_offsets_ns(cfg)
    out = {
        "mode": cfg["mode"],
        "workers": len(shards),
        "event_loop": loops.resolve(cfg["event_loop"]),
        "warmup_requests": cfg["warmup_requests"],
        "run_deadline_s": config_mod.run_deadline_s(cfg),
        "request_timeout_s": cfg["request_timeout_s"],
    }
    if offsets is not None:
        out["planned_requests"] = len(offsets)
        out["planned_duration_s"] = offsets[-1] / 1e9 if offsets else 0.0
        out["rate"] = cfg["rate"]
    else:
        out["planned_requests"] = cfg["num_requests"]
        out["planned_duration_s"] = cfg["duration_s"]
        out["concurrency"] = cfg["concurrency"]
    return out


class _Shard:
    """Runs one shard on the current event loop."""

    def __init__(self, cfg: dict, shard: dict, prompts: list[str]) -> None:
        self.cfg = cfg
        self.shard = shard
        self.prompts = prompts
        self.pool = Pool(cfg["base_url"], cfg["validate_certs"], cfg["ca_file"])
        self.records: list[dict] = []
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False
        self.not_sent = 0

    def _prompt(self, index: int) -> tuple[str, bytes]:
        prompt = self.prompts[index % len(self.prompts)]
        return prompt, build_request(self.cfg, self.pool, prompt)

    async def warmup(self) -> int:
        """Unmeasured requests, then (fixed concurrency) one open connection per slot;
        returns the warm-up errors."""
        errors = await self._warmup_requests()
        if "concurrency" in self.shard:
            await self.pool.preconnect(
                self.shard["concurrency"], min(self.cfg["request_timeout_s"], 10.0)
            )
        return errors

    async def _warmup_requests(self) -> int:
        count = self.shard["warmup"]
        if not count:
            return 0
        width = max(1, min(count, self.shard.get("concurrency", 32)))
        queue = list(range(count))

        async def lane() -> list[dict]:
            done = []
            while queue:
                index = queue.pop()
                prompt, request = self._prompt(index)
                done.append(
                    await send(
                        self.cfg,
                        self.pool,
                        request,
                        prompt=prompt,
                        planned_ns=time.perf_counter_ns(),
                        timeout_s=self.cfg["request_timeout_s"],
                    )
                )
            return done

        results = await asyncio.gather(*(lane() for _attempt in range(width)))
        return sum(1 for lane_records in results for r in lane_records if r["error_type"])

    async def measured(self, t0_ns: int, deadline_ns: int) -> None:
        runner = self._rate if "offsets" in self.shard else self._concurrency
        main = asyncio.ensure_future(runner(t0_ns, deadline_ns))
        timeout = max(deadline_ns - time.perf_counter_ns(), 0) / 1e9
        done, _unused = await asyncio.wait({main}, timeout=timeout)
        if not done:
            self.stopping = True
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            main.cancel()
            await asyncio.gather(main, return_exceptions=True)
        if "num_requests" in self.shard:  # slots stopped by the deadline leave some unsent
            self.not_sent = max(self.shard["num_requests"] - len(self.records), 0)
        self.pool.close()

    def _keep(self, record: dict, index: int, t0_ns: int) -> None:
        record["index"] = index
        record["worker"] = self.shard["index"]
        record["planned_offset_s"] = (record.pop("planned_ns") - t0_ns) / 1e9
        record["send_offset_s"] = (record.pop("sent_ns") - t0_ns) / 1e9
        self.records.append(record)

    def _done(self, task: asyncio.Task, index: int, t0_ns: int) -> None:
        self.tasks.discard(task)
        if task.cancelled():  # stopped by the deadline before it could start
            self.not_sent += 1
        else:
            self._keep(task.result(), index, t0_ns)

    async def _concurrency(self, t0_ns: int, deadline_ns: int) -> None:
        cfg, shard = self.cfg, self.shard
        limit = shard.get("num_requests")
        end_ns = t0_ns + int(cfg["duration_s"] * 1e9) if cfg["duration_s"] else None
        counter = iter(range(10**12))
        timeout = cfg["request_timeout_s"]

        async def slot() -> None:
            planned = t0_ns
            while not self.stopping:
                local = next(counter)
                if limit is not None and local >= limit:
                    return
                if end_ns is not None and time.perf_counter_ns() >= end_ns:
                    return
                index = local * shard["workers"] + shard["index"]
                prompt, request = self._prompt(index)
                record = await send(
                    cfg, self.pool, request, prompt=prompt, planned_ns=planned, timeout_s=timeout
                )
                self._keep(record, index, t0_ns)
                planned = time.perf_counter_ns()  # the slot is free again: next is due

        delay = (t0_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        for _attempt in range(shard["concurrency"]):
            task = asyncio.ensure_future(slot())
            self.tasks.add(task)
        await asyncio.gather(*self.tasks)

    async def _rate(self, t0_ns: int, deadline_ns: int) -> None:
        cfg, shard = self.cfg, self.shard
        timeout = cfg["request_timeout_s"]
        offsets = shard["offsets"]
        for position, offset in enumerate(offsets):
            planned = t0_ns + offset
            if planned >= deadline_ns or self.stopping:
                self.not_sent += len(offsets) - position
                break
            delay = (planned - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            index = position * shard["workers"] + shard["index"]
            prompt, request = self._prompt(index)
            task = asyncio.ensure_future(
                send(cfg, self.pool, request, prompt=prompt, planned_ns=planned, timeout_s=timeout)
            )
            task.add_done_callback(lambda t, i=index: self._done(t, i, t0_ns))
            self.tasks.add(task)
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def _prompts_for(cfg: dict) -> list[str]:
    count = cfg["num_requests"] or 1024
    return prompts_mod.load(cfg, count + cfg["warmup_requests"])


async def _run_local(
    cfg: dict, shard: dict, prompts: list[str], progress: ProgressFn | None, total: int | None
) -> dict:
    runner = _Shard(cfg, shard, prompts)
    warm_errors = await runner.warmup()
    t0 = time.perf_counter_ns()
    deadline = t0 + int(config_mod.run_deadline_s(cfg) * 1e9)
    ticker = _ticker(runner, lambda n: progress(n, total)) if progress else None
    cpu0 = time.process_time()
    await runner.measured(t0, deadline)
    if ticker:
        ticker.cancel()
        progress(len(runner.records), total)
    return _shard_result(runner, warm_errors, t0, cpu0)


def _shard_result(runner: _Shard, warm_errors: int, t0: int, cpu0: float) -> dict:
    """What a shard reports once its measured run is over."""
    return {
        "records": runner.records,
        "warmup_errors": warm_errors,
        "not_sent": runner.not_sent,
        "connections": runner.pool.opened,
        "elapsed_s": (time.perf_counter_ns() - t0) / 1e9,
        "cpu_s": time.process_time() - cpu0,
    }


def _ticker(runner: _Shard, report: Callable[[int], None]) -> asyncio.Task:
    async def tick() -> None:
        while True:
            await asyncio.sleep(_PROGRESS_EVERY_S)
            report(len(runner.records))

    return asyncio.ensure_future(tick())


def _worker_main(conn: Connection, cfg: dict, shard: dict, prompts: list[str]) -> None:
    """Entry of a forked worker: warm up, wait for the shared start, run, report."""

    async def main() -> dict:
        runner = _Shard(cfg, shard, prompts)
        warm_errors = await runner.warmup()
        conn.send(("warm", warm_errors))
        loop = asyncio.get_running_loop()
        start: asyncio.Future = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: start.done() or start.set_result(conn.recv()))
        _unused, t0, deadline = await start
        loop.remove_reader(conn.fileno())
        # uvloop's add_reader left the pipe non-blocking: a large result would fail
        # with EAGAIN in send().
        os.set_blocking(conn.fileno(), True)
        ticker = _ticker(runner, lambda n: conn.send(("progress", n)))
        cpu0 = time.process_time()
        await runner.measured(t0, deadline)
        ticker.cancel()
        return _shard_result(runner, warm_errors, t0, cpu0)

    try:
        conn.send(("done", loops.run(main(), loops.resolve(cfg["event_loop"]))))
    except Exception as exc:  # reported to the parent, which names the worker
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


_EMPTY = {
    "records": [],
    "warmup_errors": 0,
    "not_sent": 0,
    "connections": 0,
    "elapsed_s": 0.0,
    "cpu_s": 0.0,
}


class _Coordinator:
    """Parent side of a multi-process run: start workers, release them together once
    all are warm, collect progress and results, enforce the run deadline."""

    def __init__(
        self, cfg: dict, shards: list[dict], progress: ProgressFn | None, total: int | None
    ) -> None:
        self.cfg = cfg
        self.shards = shards
        self.progress = progress
        self.total = total
        self.conns: list[Connection] = []
        self.procs: list = []
        self.results: dict[int, dict] = {}
        self.counts = [0] * len(shards)
        self.warm: set[int] = set()
        self.failures: list[str] = []

    def start(self, prompts: list[str]) -> None:
        ctx = multiprocessing.get_context("fork")
        for shard in self.shards:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(child, self.cfg, shard, prompts), daemon=True
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def _handle(self, i: int, message: tuple) -> None:
        kind, *payload = message
        if kind == "warm":
            self.warm.add(i)
        elif kind == "progress":
            self.counts[i] = payload[0]
            if self.progress:
                self.progress(sum(self.counts), self.total)
        elif kind == "done":
            self.results[i] = payload[0]
            self.counts[i] = len(payload[0]["records"])
        else:
            self.failures.append(f"worker {i}: {payload[0]}")
            self.results[i] = _EMPTY

    def collect(self) -> list[dict]:
        run_s = config_mod.run_deadline_s(self.cfg)
        limit = (
            time.monotonic()
            + self.cfg["request_timeout_s"] * max(1, self.cfg["warmup_requests"])
            + 30
        )
        started = False
        while len(self.results) < len(self.shards):
            if not started and len(self.warm) == len(self.shards):
                t0 = time.perf_counter_ns() + _START_DELAY_NS
                for conn in self.conns:
                    conn.send(("start", t0, t0 + int(run_s * 1e9)))
                started = True
                limit = time.monotonic() + run_s + _WORKER_GRACE_S
            if time.monotonic() > limit:
                self.failures.append("workers did not finish before the run deadline")
                break
            waiting = [c for i, c in enumerate(self.conns) if i not in self.results]
            for conn in wait(waiting, timeout=_PROGRESS_EVERY_S):
                i = self.conns.index(conn)
                try:
                    self._handle(i, conn.recv())
                except EOFError:
                    self.failures.append(f"worker {i} exited without results")
                    self.results[i] = _EMPTY
        return [self.results[i] for i in sorted(self.results)]

    def stop(self) -> None:
        for proc in self.procs:
            proc.join(timeout=1)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1)


def _run_processes(
    cfg: dict,
    shards: list[dict],
    prompts: list[str],
    progress: ProgressFn | None,
    total: int | None,
) -> list[dict]:
    coordinator = _Coordinator(cfg, shards, progress, total)
    coordinator.start(prompts)
    try:
        parts = coordinator.collect()
    finally:
        coordinator.stop()
    if coordinator.failures:
        raise RuntimeError("; ".join(coordinator.failures))
    if progress:
        progress(sum(coordinator.counts), total)
    return parts


def _cpu_share(parts: list[dict]) -> float | None:
    busy = [p["cpu_s"] / p["elapsed_s"] for p in parts if p["elapsed_s"] > 0]
    return round(max(busy), 3) if busy else None


def run(cfg: dict, progress: ProgressFn | None = None) -> dict:
    """Run a validated config; returns the raw run (per-request records and facts)."""
    check_limits(cfg)
    counters = tokens_mod.counters(cfg)  # a bad tokenizer_file fails before sending
    prompts = _prompts_for(cfg)
    shards = make_shards(cfg)
    offsets = planned_offsets_ns(cfg)
    total = len(offsets) if offsets is not None else cfg["num_requests"]
    wall_start = time.time()
    if len(shards) == 1:
        parts = [
            loops.run(
                _run_local(cfg, shards[0], prompts, progress, total),
                loops.resolve(cfg["event_loop"]),
            )
        ]
    else:
        parts = _run_processes(cfg, shards, prompts, progress, total)
    records = sorted((r for p in parts for r in p["records"]), key=lambda r: r["send_offset_s"])
    host = socket.gethostname()
    for record in records:
        record["host"] = host
    counting = tokens_mod.finalize(cfg, records, counters)
    return {
        **counting,
        "host": host,
        "started_at": wall_start,
        "workers": len(shards),
        "elapsed_s": max(p["elapsed_s"] for p in parts),
        "warmup_requests": cfg["warmup_requests"],
        "warmup_errors": sum(p["warmup_errors"] for p in parts),
        "not_sent": sum(p["not_sent"] for p in parts),
        "connections_opened": sum(p["connections"] for p in parts),
        # CPU the client itself used while measuring, as a share of its workers' time:
        # near 1.0 means the client, not the server, may set the pace.
        "client_cpu_s": sum(p["cpu_s"] for p in parts),
        "client_cpu_share": _cpu_share(parts),
        "event_loop": loops.resolve(cfg["event_loop"]),
        "planned_requests": total,
        "requests": records,
    }
