//! Fresh memory faulted in ahead of its first use, on a thread of its own.
//!
//! A bulk load of a file of one row per user stages each column's values in a vector sized up
//! front for the whole file. The first write to each page of it is a page fault that zeroes the
//! page: on a virtual machine, about half of the staging thread's time. Asking the kernel to
//! fault those pages in from another thread (`MADV_POPULATE_WRITE`, Linux 5.14 and later;
//! elsewhere nothing happens) moves that work to another core while the staging thread does its
//! own. Memory faulted in is memory held, so a load faults in at most a budget of it: a sparse
//! column reserved for every row would otherwise hold all of its room at once.

/// Ranges smaller than this are left to fault in as they are used.
const MIN_BYTES: usize = 4 << 20;

/// What one load may still fault in ahead of use.
#[derive(Debug)]
pub(crate) struct Prefault {
    budget: usize,
}

impl Prefault {
    /// A budget of an eighth of the machine's memory (none where it is not known).
    pub(crate) fn new() -> Self {
        Self {
            budget: physical_memory() / 8,
        }
    }

    /// Faults in, on another thread, the whole pages of `range` (an address and a length, as
    /// [`spare`] gives them) if the budget still holds them.
    pub(crate) fn range(&mut self, (addr, len): (usize, usize)) {
        if len < MIN_BYTES || len > self.budget {
            return;
        }
        self.budget -= len;
        populate(addr, len);
    }
}

/// The spare capacity of `v` (its room past its length), as an address and a length in bytes.
pub(crate) fn spare<T>(v: &Vec<T>) -> (usize, usize) {
    let len = (v.capacity() - v.len()) * size_of::<T>();
    (v.as_ptr().wrapping_add(v.len()) as usize, len)
}

/// The spare capacity of `s`, as [`spare`] gives it.
#[cfg(feature = "import")]
pub(crate) fn spare_text(s: &String) -> (usize, usize) {
    (s.as_ptr() as usize + s.len(), s.capacity() - s.len())
}

#[cfg(target_os = "linux")]
fn physical_memory() -> usize {
    // SAFETY: `sysconf` reads system configuration and has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    usize::try_from(pages)
        .unwrap_or(0)
        .saturating_mul(usize::try_from(page).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn physical_memory() -> usize {
    0
}

/// Faults in, on another thread, the whole pages within `len` bytes at address `addr`.
#[cfg(target_os = "linux")]
fn populate(addr: usize, len: usize) {
    const PAGE: usize = 4096;
    let start = addr.next_multiple_of(PAGE);
    let end = addr.saturating_add(len) / PAGE * PAGE;
    if end <= start {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("portrait-prefault".into())
        .spawn(move || {
            // SAFETY: `madvise` takes any address range, and reports one that is not (or no
            // longer) mapped as an error, ignored here. MADV_POPULATE_WRITE faults pages in as
            // a write would, without writing: the contents of memory never change, so this is
            // sound even when the vector has since grown or been freed and its pages reused.
            unsafe {
                libc::madvise(
                    start as *mut libc::c_void,
                    end - start,
                    libc::MADV_POPULATE_WRITE,
                )
            };
        });
}

#[cfg(not(target_os = "linux"))]
fn populate(_addr: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget takes ranges while it holds them, and never ranges too small to be worth a
    /// thread.
    #[test]
    fn the_budget_bounds_what_is_faulted_in() {
        let mut p = Prefault { budget: 20 << 20 };
        // Small ranges and ranges of nothing mapped (address 0: madvise fails, ignored).
        p.range((0, MIN_BYTES - 1));
        assert_eq!(p.budget, 20 << 20);
        p.range((0, 8 << 20));
        assert_eq!(p.budget, 12 << 20);
        p.range((0, 8 << 20));
        assert_eq!(p.budget, 4 << 20);
        p.range((0, 8 << 20));
        assert_eq!(p.budget, 4 << 20, "over the budget: left alone");
        assert!(Prefault::new().budget > 0 || cfg!(not(target_os = "linux")));
    }

    /// A vector's spare capacity is its room past its length.
    #[test]
    fn spare_is_the_room_past_the_length() {
        let mut v: Vec<u64> = Vec::with_capacity(100);
        v.extend([1, 2, 3]);
        let (addr, len) = spare(&v);
        assert_eq!(addr, v.as_ptr() as usize + 3 * 8);
        assert_eq!(len, (v.capacity() - 3) * 8);
        #[cfg(feature = "import")]
        {
            let mut s = String::with_capacity(64);
            s.push_str("abc");
            assert_eq!(spare_text(&s), (s.as_ptr() as usize + 3, s.capacity() - 3));
        }
    }

    /// Pages asked for are resident soon after, untouched by this thread, and read as zeros.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_range_is_faulted_in_by_another_thread() {
        const LEN: usize = 16 << 20;
        // SAFETY: a fresh private anonymous mapping, unmapped at the end of the test.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED);
        let resident = || {
            let mut pages = vec![0u8; LEN / 4096];
            // SAFETY: `at` is a mapping of `LEN` bytes and `pages` has a byte per page of it.
            let r = unsafe { libc::mincore(at, LEN, pages.as_mut_ptr()) };
            assert_eq!(r, 0);
            pages.iter().filter(|&&p| p & 1 == 1).count()
        };
        assert_eq!(resident(), 0);
        Prefault { budget: LEN }.range((at as usize, LEN));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while resident() < LEN / 4096 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(resident(), LEN / 4096);
        // SAFETY: the mapping is `LEN` bytes of readable memory.
        let bytes = unsafe { std::slice::from_raw_parts(at.cast::<u8>(), LEN) };
        assert!(bytes.iter().all(|&b| b == 0));
        // SAFETY: unmaps the mapping made above; `bytes` is not used after this.
        assert_eq!(unsafe { libc::munmap(at, LEN) }, 0);
    }
}
