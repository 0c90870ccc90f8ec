;; A guest for the wasi_host fuzz target. It reads its input (the fuzz data) into memory at 0,
;; then makes up to 16 WASI calls described there, 17 bytes each from offset 1: a function
;; number and four i32 arguments. The arguments point anywhere, in bounds or not, and the
;; rest of memory holds whatever the input held.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)

  (func $arg (param $op i32) (param $n i32) (result i32)
    (i32.load (i32.add (i32.add (local.get $op) (i32.const 1)) (i32.shl (local.get $n) (i32.const 2)))))

  (func (export "_start")
    (local $op i32) (local $i i32) (local $count i32) (local $a i32) (local $b i32) (local $c i32) (local $d i32)
    ;; One read of stdin into [0, 65536): iovec at 131000, count written at 131008.
    (i32.store (i32.const 131000) (i32.const 0))
    (i32.store (i32.const 131004) (i32.const 65536))
    (drop (call $fd_read (i32.const 0) (i32.const 131000) (i32.const 1) (i32.const 131008)))
    (local.set $count (i32.and (i32.load8_u (i32.const 0)) (i32.const 15)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $op (i32.add (i32.const 1) (i32.mul (local.get $i) (i32.const 17))))
        (local.set $a (call $arg (local.get $op) (i32.const 0)))
        (local.set $b (call $arg (local.get $op) (i32.const 1)))
        (local.set $c (call $arg (local.get $op) (i32.const 2)))
        (local.set $d (call $arg (local.get $op) (i32.const 3)))
        (block $call
          (block $exit (block $open (block $yield (block $prestat (block $close (block $fdstat
          (block $random (block $clock (block $environ (block $environ_sizes (block $args
          (block $args_sizes (block $write (block $read
            (br_table $read $write $args_sizes $args $environ_sizes $environ $clock $random
                      $fdstat $close $prestat $yield $open $exit
                      (i32.rem_u (i32.load8_u (local.get $op)) (i32.const 14))))
          (drop (call $fd_read (local.get $a) (local.get $b) (local.get $c) (local.get $d))) (br $call))
          (drop (call $fd_write (local.get $a) (local.get $b) (local.get $c) (local.get $d))) (br $call))
          (drop (call $args_sizes_get (local.get $a) (local.get $b))) (br $call))
          (drop (call $args_get (local.get $a) (local.get $b))) (br $call))
          (drop (call $environ_sizes_get (local.get $a) (local.get $b))) (br $call))
          (drop (call $environ_get (local.get $a) (local.get $b))) (br $call))
          (drop (call $clock_time_get (local.get $a) (i64.extend_i32_u (local.get $b)) (local.get $c))) (br $call))
          (drop (call $random_get (local.get $a) (i32.and (local.get $b) (i32.const 0x1ffff)))) (br $call))
          (drop (call $fd_fdstat_get (local.get $a) (local.get $b))) (br $call))
          (drop (call $fd_close (local.get $a))) (br $call))
          (drop (call $fd_prestat_get (local.get $a) (local.get $b))) (br $call))
          (drop (call $sched_yield)) (br $call))
          (drop (call $path_open (local.get $a) (local.get $b) (local.get $c) (local.get $d)
                  (local.get $a) (i64.const 0) (i64.const 0) (local.get $b) (local.get $c))) (br $call))
          (call $proc_exit (local.get $a)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
)
