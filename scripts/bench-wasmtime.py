#!/usr/bin/env python3
"""Times a WASI command under wasmtime (the PyPI package), as a peer runtime to compare with.

Usage: bench-wasmtime.py MODULE.wasm REQUEST-FILE RUNS [--fuel]

Compiles the module once with wasmtime's defaults (Cranelift, no fuel), then runs it RUNS times,
each in a fresh store and instance with the request on stdin, and prints the median time of a
run (instantiation and `_start`) in microseconds. With `--fuel`, wasmtime meters the guest with
its own fuel (`consume_fuel`, 10^9 units per run, as wasmesh's default limit).
"""
import statistics
import sys
import tempfile
import time

import wasmtime

FUEL = 1_000_000_000

def main() -> None:
    module_path, request_path, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    metered = "--fuel" in sys.argv[4:]
    config = wasmtime.Config()
    config.consume_fuel = metered
    engine = wasmtime.Engine(config)
    module = wasmtime.Module.from_file(engine, module_path)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    times = []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(runs + 2):
            store = wasmtime.Store(engine)
            if metered:
                store.set_fuel(FUEL)
            wasi = wasmtime.WasiConfig()
            wasi.stdin_file = request_path
            wasi.stdout_file = f"{scratch}/out"
            store.set_wasi(wasi)
            started = time.perf_counter()
            instance = linker.instantiate(store, module)
            try:
                instance.exports(store)["_start"](store)
            except wasmtime.ExitTrap as exit_trap:
                if exit_trap.code != 0:
                    raise
            times.append(time.perf_counter() - started)
    # The first two runs warm caches and are left out.
    print(f"{statistics.median(times[2:]) * 1e6:.1f}")


if __name__ == "__main__":
    main()
