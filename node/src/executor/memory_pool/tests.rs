use super::*;

const STATIC: MemoryStyle = MemoryStyle::Static {
    bound: Pages(0x1_0000),
    offset_guard_size: 0x8000_0000,
};

fn memory_type(minimum: u32) -> MemoryType {
    MemoryType::new(Pages(minimum), None, false)
}

/// A memory with its definition, as an instance would hold them.
struct Held {
    definition: Box<VMMemoryDefinition>,
    memory: PooledMemory,
}

impl Held {
    fn new(pool: &Arc<MemoryPool>, minimum: u32) -> Self {
        let mut definition = Box::new(VMMemoryDefinition {
            base: std::ptr::null_mut(),
            current_length: 0,
        });
        let location = NonNull::from(definition.as_mut());
        // SAFETY: the definition is boxed beside the memory and outlives it.
        let memory = unsafe { pool.memory(&memory_type(minimum), &STATIC, location) }
            .expect("a static memory is pooled")
            .expect("a region");
        Self { definition, memory }
    }

    fn base(&self) -> usize {
        self.definition.base as usize
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the definition describes the accessible part of the memory.
        unsafe {
            std::slice::from_raw_parts_mut(self.definition.base, self.definition.current_length)
        }
    }
}

/// The length of the readable-and-writable mapping that starts at `base` (from /proc/self/maps).
fn accessible_at(base: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .find_map(|line| {
            let (range, rest) = line.split_once(' ')?;
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start == base).then(|| {
                if rest.starts_with("rw") {
                    end - start
                } else {
                    0
                }
            })
        })
        .unwrap_or(0)
}

const PAGE: usize = WASM_PAGE_SIZE;

#[test]
fn a_reused_region_is_zeroed_and_exactly_the_new_size() {
    let pool = MemoryPool::new(4);
    let mut first = Held::new(&pool, 2);
    let base = first.base();
    assert_eq!(accessible_at(base), 2 * PAGE);
    first.bytes().fill(0xAB);
    first.memory.grow(Pages(3)).unwrap();
    assert_eq!(accessible_at(base), 5 * PAGE);
    first.bytes()[4 * PAGE..].fill(0xCD);
    drop(first);
    assert_eq!(pool.pooled(), 1);

    let mut second = Held::new(&pool, 1);
    assert_eq!(second.base(), base, "the region was reused");
    assert_eq!(
        accessible_at(base),
        PAGE,
        "only the new minimum is accessible"
    );
    assert!(second.bytes().iter().all(|b| *b == 0));
    // Growing again exposes only zeros, not what the first user wrote there.
    second.memory.grow(Pages(4)).unwrap();
    assert_eq!(second.memory.size(), Pages(5));
    assert!(second.bytes().iter().all(|b| *b == 0));
}

#[test]
fn single_bytes_written_anywhere_are_cleared_before_reuse() {
    let pool = MemoryPool::new(4);
    let mut first = Held::new(&pool, 2);
    let base = first.base();
    // One byte in a page that is otherwise untouched, at a page's first and last byte, and
    // at the memory's very last byte: each must be found by the check for written chunks.
    let spots = [0, 3 * 4096 + 17, 5 * 4096 - 1, 7 * 4096, 2 * PAGE - 1];
    for spot in spots {
        first.bytes()[spot] = 0x01;
    }
    drop(first);
    let mut second = Held::new(&pool, 2);
    assert_eq!(second.base(), base, "the region was reused");
    let left: Vec<usize> = (0..2 * PAGE).filter(|i| second.bytes()[*i] != 0).collect();
    assert!(left.is_empty(), "bytes left from the last user at {left:?}");
}

#[test]
fn a_large_memory_is_given_back_to_the_kernel_and_reads_zero() {
    let pool = MemoryPool::new(4);
    let pages = (CLEAR_IN_PLACE_MAX / PAGE) as u32 * 2;
    let mut first = Held::new(&pool, pages);
    let base = first.base();
    first.bytes().fill(0x5A);
    drop(first);
    let mut second = Held::new(&pool, pages);
    assert_eq!(second.base(), base);
    assert!(second.bytes().iter().all(|b| *b == 0));
}

#[test]
fn a_reset_memory_hides_nothing_for_later() {
    let pool = MemoryPool::new(4);
    let mut held = Held::new(&pool, 3);
    held.bytes().fill(0x77);
    held.memory.reset().unwrap();
    assert_eq!(accessible_at(held.base()), 0);
    held.memory.grow(Pages(3)).unwrap();
    assert!(held.bytes().iter().all(|b| *b == 0));
}

#[test]
fn growth_stops_at_the_declared_maximum_and_the_pool_at_its_size() {
    let pool = MemoryPool::new(1);
    let mut definition = Box::new(VMMemoryDefinition {
        base: std::ptr::null_mut(),
        current_length: 0,
    });
    let location = NonNull::from(definition.as_mut());
    let ty = MemoryType::new(Pages(1), Some(Pages(2)), false);
    // SAFETY: the definition outlives the memory.
    let mut memory = unsafe { pool.memory(&ty, &STATIC, location) }
        .unwrap()
        .unwrap();
    assert_eq!(memory.grow(Pages(1)).unwrap(), Pages(1));
    assert!(memory.grow(Pages(1)).is_err());
    let other = Held::new(&pool, 1);
    drop(memory);
    drop(other);
    assert_eq!(pool.pooled(), 1, "at most max_pooled regions are kept");
    drop(definition);
}

#[test]
fn dynamic_and_shared_memories_are_not_pooled() {
    let pool = MemoryPool::new(1);
    let mut definition = VMMemoryDefinition {
        base: std::ptr::null_mut(),
        current_length: 0,
    };
    let location = NonNull::from(&mut definition);
    let dynamic = MemoryStyle::Dynamic {
        offset_guard_size: 0,
    };
    // SAFETY: nothing is created for these.
    unsafe {
        assert!(pool.memory(&memory_type(1), &dynamic, location).is_none());
        let shared = MemoryType::new(Pages(1), Some(Pages(2)), true);
        assert!(pool.memory(&shared, &STATIC, location).is_none());
    }
}
