//! Linear memories from a pool of address-space reservations, so a fresh instance per request
//! does not map, protect and unmap gigabytes of address space every time.
//!
//! A static wasm32 memory is a reservation of its bound (4 GiB) plus a guard region; compiled
//! code skips bounds checks and relies on every byte past the memory's current size faulting.
//! Mapping and unmapping that reservation per request cost more than the rest of a small
//! request: `munmap` shoots down the TLBs of every core and takes the process's mmap lock for
//! writing (see BENCHMARKS.md).
//!
//! Each [`Region`] keeps that shape while pooled:
//! - exactly its memory's current size is readable and writable; everything after it, up to the
//!   end of the reservation, is `PROT_NONE`, as in a fresh mapping;
//! - when a memory is dropped, its region is zeroed before it goes back to the pool: when at
//!   most [`CLEAR_IN_PLACE_MAX`] bytes were accessible, by writing zeros over each page that is
//!   not all zero already (cheap, keeps the pages resident), otherwise with `MADV_DONTNEED`,
//!   which returns the pages to the kernel and reads back as zeros;
//! - on reuse, protection is moved to the new memory's minimum size.
//!
//! So a guest always starts from zeroed memory of exactly its declared size, then wasmer writes
//! its data segments, as with a fresh mapping. At most `max_pooled` regions are kept; the rest
//! are unmapped. Only static, unshared memories are pooled; others come from wasmer as before.

use std::io;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, VMMemoryDefinition};
use wasmer::{MemoryType, Pages, WASM_PAGE_SIZE};

/// Regions whose accessible part is at most this large are zeroed in place when released;
/// larger ones are given back to the kernel with `MADV_DONTNEED`.
pub(crate) const CLEAR_IN_PLACE_MAX: usize = 4 * WASM_PAGE_SIZE;

/// One reservation: `reserved` bytes of address space, the first `accessible` of them readable
/// and writable, all of them zero while the region is in the pool.
#[derive(Debug)]
struct Region {
    base: NonNull<u8>,
    reserved: usize,
    accessible: usize,
}

// SAFETY: a region is plain address space owned by one memory (or the pool) at a time.
unsafe impl Send for Region {}

impl Region {
    fn reserve(reserved: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice; nothing else
        // refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserved,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self {
            base,
            reserved,
            accessible: 0,
        })
    }

    /// Makes exactly the first `bytes` accessible (the rest `PROT_NONE`). A range it hides is
    /// discarded first, so nothing written there can reappear when it is made accessible again.
    fn set_accessible(&mut self, bytes: usize) -> io::Result<()> {
        if bytes > self.reserved {
            return Err(io::Error::other("beyond the reservation"));
        }
        let (start, len, protection) = if bytes > self.accessible {
            (
                self.accessible,
                bytes - self.accessible,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } else {
            (bytes, self.accessible - bytes, libc::PROT_NONE)
        };
        if len > 0 && protection == libc::PROT_NONE {
            self.discard(start, len)?;
        }
        if len > 0 {
            // SAFETY: the range lies inside this region's reservation, which this region owns.
            let done =
                unsafe { libc::mprotect(self.base.as_ptr().add(start).cast(), len, protection) };
            if done != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.accessible = bytes;
        Ok(())
    }

    /// Zeroes everything the last user could have written (everything beyond `accessible` is
    /// zero already: see [`Self::set_accessible`]).
    fn clear(&mut self) -> io::Result<()> {
        if self.accessible <= CLEAR_IN_PLACE_MAX {
            // SAFETY: the first `accessible` bytes are mapped read-write and owned by this region,
            // whose memory has been dropped: nothing else refers to them.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.accessible) };
            zero_written_chunks(bytes);
            return Ok(());
        }
        self.discard(0, self.accessible)
    }

    /// Gives a range's pages back to the kernel: for a private anonymous mapping they read back
    /// as zeros.
    fn discard(&mut self, start: usize, len: usize) -> io::Result<()> {
        // SAFETY: the range lies inside this region's reservation, which this region owns.
        let done = unsafe {
            libc::madvise(
                self.base.as_ptr().add(start).cast(),
                len,
                libc::MADV_DONTNEED,
            )
        };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Zeroes the chunks of `bytes` that are not all zero. A small guest writes a few of its
/// memory's chunks; reading a chunk is cheaper than writing it (no line is dirtied, nothing is
/// written back), so the untouched ones are only read.
fn zero_written_chunks(bytes: &mut [u8]) {
    for chunk in bytes.chunks_mut(CLEAR_CHUNK) {
        if !is_zero(chunk) {
            chunk.fill(0);
        }
    }
}

/// Chunk of [`zero_written_chunks`]: one 4 KiB page.
const CLEAR_CHUNK: usize = 4096;

/// Whether every byte of `bytes` is zero: the whole chunk is folded with no early exit, which
/// the compiler turns into wide loads (a chunk is in the cache either way).
fn is_zero(bytes: &[u8]) -> bool {
    // SAFETY: every bit pattern is a valid u128.
    let (head, words, tail) = unsafe { bytes.align_to::<u128>() };
    let folded = words.iter().fold(0, |any, word| any | word);
    folded == 0 && head.iter().chain(tail).all(|b| *b == 0)
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the whole reservation was mapped by `reserve` and is not used any more.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.reserved) };
    }
}

/// Free regions, all of one reservation size.
#[derive(Debug)]
pub(crate) struct MemoryPool {
    free: Mutex<Vec<Region>>,
    max_pooled: usize,
}

impl MemoryPool {
    pub(crate) fn new(max_pooled: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(Vec::new()),
            max_pooled,
        })
    }

    fn take(&self, reserved: usize) -> io::Result<Region> {
        let pooled = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match pooled {
            Some(region) if region.reserved == reserved => Ok(region),
            _ => Region::reserve(reserved),
        }
    }

    fn give_back(&self, mut region: Region) {
        if region.clear().is_err() {
            // Not known to be zero: never reuse it.
            return;
        }
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if free.len() < self.max_pooled {
            free.push(region);
        }
    }

    /// Regions waiting for reuse.
    #[cfg(test)]
    pub(crate) fn pooled(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// A memory of type `ty` in a pooled region, for compiled code of `style`, whose definition
    /// lives at `definition`. `None` when the style is not one the pool serves (the caller then
    /// creates the memory the usual way).
    ///
    /// # Safety
    /// `definition` must point to the instance's memory definition and stay valid for the life
    /// of the memory, as for wasmer's own `VMOwnedMemory::from_definition`.
    pub(crate) unsafe fn memory(
        self: &Arc<Self>,
        ty: &MemoryType,
        style: &MemoryStyle,
        definition: NonNull<VMMemoryDefinition>,
    ) -> Option<Result<PooledMemory, MemoryError>> {
        let MemoryStyle::Static {
            bound,
            offset_guard_size,
        } = *style
        else {
            return None;
        };
        if ty.shared || ty.minimum > bound || ty.maximum.is_some_and(|max| max < ty.minimum) {
            return None;
        }
        let reserved = bound.bytes().0.checked_add(offset_guard_size as usize)?;
        let mut memory = PooledMemory {
            region: None,
            pool: self.clone(),
            ty: *ty,
            style: *style,
            definition,
            size: Pages(0),
        };
        let made = self
            .take(reserved)
            .and_then(|region| {
                memory.region = Some(region);
                memory.resize(ty.minimum)
            })
            .map(|()| memory)
            .map_err(|e| MemoryError::Region(e.to_string()));
        Some(made)
    }
}

/// A static linear memory in a pooled region; its region goes back to the pool, zeroed, when
/// it is dropped.
#[derive(Debug)]
pub(crate) struct PooledMemory {
    region: Option<Region>,
    pool: Arc<MemoryPool>,
    ty: MemoryType,
    style: MemoryStyle,
    definition: NonNull<VMMemoryDefinition>,
    size: Pages,
}

// SAFETY: like wasmer's `VMOwnedMemory`: the definition pointer is only written by the thread
// that runs the instance, which owns the memory (wasmer requires `Send` only).
unsafe impl Send for PooledMemory {}

impl PooledMemory {
    /// Sets the accessible size to `pages` and publishes it to compiled code.
    fn resize(&mut self, pages: Pages) -> io::Result<()> {
        let region = self
            .region
            .as_mut()
            .ok_or_else(|| io::Error::other("no region"))?;
        region.set_accessible(pages.bytes().0)?;
        self.size = pages;
        // SAFETY: the caller of `MemoryPool::memory` keeps the definition valid.
        unsafe {
            let definition = self.definition.as_ptr();
            (*definition).base = region.base.as_ptr();
            (*definition).current_length = pages.bytes().0;
        }
        Ok(())
    }

    fn bound(&self) -> Pages {
        match self.style {
            MemoryStyle::Static { bound, .. } => bound,
            MemoryStyle::Dynamic { .. } => Pages(0),
        }
    }
}

impl LinearMemory for PooledMemory {
    fn ty(&self) -> MemoryType {
        MemoryType {
            minimum: self.size,
            ..self.ty
        }
    }

    fn size(&self) -> Pages {
        self.size
    }

    fn style(&self) -> MemoryStyle {
        self.style
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let previous = self.size;
        if delta.0 == 0 {
            return Ok(previous);
        }
        let could_not = MemoryError::CouldNotGrow {
            current: previous,
            attempted_delta: delta,
        };
        let Some(wanted) = previous.checked_add(delta) else {
            return Err(could_not);
        };
        let maximum = self.ty.maximum.unwrap_or(Pages::max_value());
        if wanted > maximum || wanted > self.bound() || wanted > Pages::max_value() {
            return Err(could_not);
        }
        self.resize(wanted)
            .map_err(|e| MemoryError::Region(e.to_string()))?;
        Ok(previous)
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        self.resize(Pages(0))
            .map_err(|e| MemoryError::Region(e.to_string()))
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + 'static>, MemoryError> {
        Err(MemoryError::Generic(
            "a pooled memory cannot be cloned".into(),
        ))
    }

    fn copy(&mut self) -> Result<Box<dyn LinearMemory + 'static>, MemoryError> {
        Err(MemoryError::Generic(
            "a pooled memory cannot be copied".into(),
        ))
    }
}

impl Drop for PooledMemory {
    fn drop(&mut self) {
        if let Some(region) = self.region.take() {
            self.pool.give_back(region);
        }
    }
}

#[cfg(test)]
mod tests;
