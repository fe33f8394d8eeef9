//! Memory-mapped files, their page-cache advice, and zero-copy bitmap views: the storage
//! layer's only `unsafe`.
//!
//! # Safety
//!
//! Two invariants make the code here sound:
//!
//! 1. **Mapped files are immutable.** The engine writes every segment file once, fsyncs it, and
//!    never opens it for writing again; files are removed (never truncated) when no manifest names
//!    them, and on Linux a removed file stays mapped until unmapped. A process outside the engine
//!    that modifies files under a live database breaks this invariant, as it would for any
//!    mmap-based database.
//! 2. **Views are built only over verified bytes.** [`MappedBlobs::bitmap`] builds a CRoaring
//!    view only after the blob's XXH3 checksum matched the one stored in the (itself checksummed)
//!    segment index, *and* CRoaring's own bounds check (`roaring_bitmap_portable_deserialize_size`)
//!    agrees that the blob holds exactly one well-formed portable bitmap of that length.
//!
//! Cached views borrow the mapping with a `'static` lifetime internally. They are stored in the
//! same struct as the [`Mmap`], declared before it so they are dropped first, and every public
//! accessor hands them out borrowed from `&self`, so no view outlives its mapping.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use croaring::{Bitmap, BitmapView, Portable};
use memmap2::Mmap;

use super::checksum;
use crate::error::{Error, Result};

/// A read-only mapped file with a per-blob cache of verified zero-copy bitmap views.
pub(crate) struct MappedBlobs {
    // Declared before `mmap`: dropped first, because the views point into the mapping.
    views: Box<[OnceLock<BitmapView<'static>>]>,
    verified: Box<[OnceLock<()>]>,
    mmap: Mmap,
    path: PathBuf,
}

impl std::fmt::Debug for MappedBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedBlobs")
            .field("path", &self.path)
            .field("len", &self.mmap.len())
            .finish()
    }
}

/// Asks the kernel to back `mmap` with 2 MiB pages where it can.
///
/// Queries read forward rows, columns and containers scattered over gigabytes of mapped
/// segments; with 4 KiB pages nearly every row read also misses the TLB. Linux 6.x page
/// caches of ext4 and xfs hold large folios, and under `MADV_HUGEPAGE` read-ahead fills PMD-size
/// ones and maps them with one TLB entry each (only for pages not already cached: see
/// [`drop_cached_pages`], which the segment writer calls on a large new segment). The top
/// 20 of 1,000 tags over a 916k-user crowd of 10M users went from 40 to 26 ms. Elsewhere (other
/// systems, tmpfs, an older kernel) the advice is refused or ignored, which changes nothing.
fn advise_huge_pages(mmap: &Mmap) {
    #[cfg(target_os = "linux")]
    if let Err(e) = mmap.advise(memmap2::Advice::HugePage) {
        tracing::debug!("MADV_HUGEPAGE refused: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = mmap;
}

/// Drops the cached pages of a just-written (and fsynced, so clean) segment file.
///
/// Written pages are cached in whatever folio sizes the writes produced, mostly 4 KiB, and a
/// mapping can use 2 MiB pages only for 2 MiB folios. Dropped, they come back through the
/// mapping's read-ahead, which fills 2 MiB folios under the huge-page advice every mapped segment
/// gets ([`advise_huge_pages`]). The price is one read of the file from disk after a large write.
pub(crate) fn drop_cached_pages(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `fadvise` reads no memory of ours; `file` is an open descriptor.
        let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r != 0 {
            tracing::debug!("POSIX_FADV_DONTNEED refused: {r}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

impl MappedBlobs {
    /// Maps `path` read-only. `slots` is the number of blobs that may be cached.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the engine never modifies a segment file after it was fsynced (module invariant 1).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        advise_huge_pages(&mmap);
        Ok(Self {
            views: Box::new([]),
            verified: Box::new([]),
            mmap,
            path: path.to_path_buf(),
        })
    }

    /// Sizes the per-blob caches once the number of blobs is known from the index.
    pub(crate) fn with_slots(mut self, slots: usize) -> Self {
        self.views = (0..slots).map(|_| OnceLock::new()).collect();
        self.verified = (0..slots).map(|_| OnceLock::new()).collect();
        self
    }

    /// The whole mapped file. Callers must not trust bytes outside checksummed ranges.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of blob `slot` at `range`, checked against `sum` on first access.
    pub(crate) fn verified_bytes(
        &self,
        slot: usize,
        range: Range<usize>,
        sum: u64,
    ) -> Result<&[u8]> {
        let bytes = self
            .mmap
            .get(range.clone())
            .ok_or_else(|| Error::corrupt(&self.path, format!("blob {range:?} out of bounds")))?;
        let cell = self
            .verified
            .get(slot)
            .ok_or_else(|| Error::Internal(format!("blob slot {slot} out of range")))?;
        if cell.get().is_none() {
            if checksum(bytes) != sum {
                return Err(Error::corrupt(
                    &self.path,
                    format!("checksum mismatch in blob {slot} at {range:?}"),
                ));
            }
            let _ = cell.set(());
        }
        Ok(bytes)
    }

    /// A zero-copy view of the portable bitmap stored as blob `slot`, verified on first access.
    pub(crate) fn bitmap(&self, slot: usize, range: Range<usize>, sum: u64) -> Result<&Bitmap> {
        let cell = self
            .views
            .get(slot)
            .ok_or_else(|| Error::Internal(format!("bitmap slot {slot} out of range")))?;
        if let Some(view) = cell.get() {
            return Ok(view);
        }
        let bytes = self.verified_bytes(slot, range.clone(), sum)?;
        if portable_size(bytes) != bytes.len() {
            return Err(Error::corrupt(
                &self.path,
                format!("blob {slot} at {range:?} is not a portable roaring bitmap"),
            ));
        }
        // SAFETY: `bytes` lies inside the immutable mapping owned by `self` (invariant 1), matched
        // its stored checksum and holds exactly one well-formed portable bitmap (invariant 2).
        // The `'static` lifetime is confined to `self.views`, dropped before `self.mmap`, and the
        // view is only ever lent out borrowed from `&self`.
        let view: BitmapView<'static> = unsafe {
            let bytes: &'static [u8] = std::slice::from_raw_parts(bytes.as_ptr(), bytes.len());
            BitmapView::deserialize::<Portable>(bytes)
        };
        let _ = cell.set(view);
        Ok(cell.get().expect("set above or by a racing thread"))
    }
}

/// The length CRoaring would read for a portable bitmap at the start of `bytes`, or 0 when the
/// bytes cannot hold one. Reads at most `bytes.len()` bytes.
pub(crate) fn portable_size(bytes: &[u8]) -> usize {
    // SAFETY: the function reads at most `maxbytes` bytes from the pointer, which we pass as the
    // slice length, so it never reads outside `bytes`.
    unsafe {
        croaring_sys::roaring_bitmap_portable_deserialize_size(bytes.as_ptr().cast(), bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_size_rejects_garbage_and_accepts_real_bitmaps() {
        let b = Bitmap::of(&[1, 5, 70_000, 1 << 20]);
        let bytes = b.serialize::<Portable>();
        assert_eq!(portable_size(&bytes), bytes.len());
        assert_eq!(portable_size(&bytes[..bytes.len() - 1]), 0);
        assert_eq!(portable_size(&[0xff; 3]), 0);
    }
}
