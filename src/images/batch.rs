//! Several photos at once, and the search behind `sxf seal --fit`.
//!
//! Photos are decoded and encoded in parallel on `threads` workers. Each worker
//! holds one decoded photo at a time, so at most `threads` decoded photos are in
//! memory at once, whatever the number of photos. Results come back in the order
//! of the input, and encoding is deterministic, so the output is byte for byte the
//! same whatever the number of threads.
//!
//! `--fit` picks one quality and one size limit for all the photos: the highest
//! quality (from the requested one down to [`FIT_MIN_QUALITY`] in steps of 5) at
//! full size, and only if even the lowest quality does not fit, the same search at
//! smaller long sides, down to [`FIT_MIN_LONG_SIDE`]. Below that floor a photo no
//! longer looks like a photo, and the caller is told what would fit instead.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{DecodedPhoto, ImageError, ImageOptions, ProcessedImage, check_options, read_input};
use crate::StopFlag;

/// The lowest quality `--fit` goes down to.
pub const FIT_MIN_QUALITY: u8 = 50;
/// The smallest long side, in pixels, `--fit` downscales to.
pub const FIT_MIN_LONG_SIDE: u32 = 1280;
/// Long sides `--fit` tries, after full size, largest first.
const FIT_LONG_SIDES: [u32; 6] = [4096, 3072, 2560, 2048, 1600, FIT_MIN_LONG_SIDE];

/// Why a batch stopped.
#[derive(Debug)]
pub(crate) enum BatchError {
    Image(ImageError),
    Interrupted,
}

impl From<ImageError> for BatchError {
    fn from(e: ImageError) -> Self {
        BatchError::Image(e)
    }
}

/// The settings `--fit` chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitChoice {
    pub quality: u8,
    pub max_dim: Option<u32>,
}

/// The outcome of [`fit`].
pub(crate) enum FitOutcome {
    /// The photos at the chosen settings.
    Fits {
        images: Vec<ProcessedImage>,
        choice: FitChoice,
    },
    /// Even at the floor, the settings in `floor`, the archive would be
    /// `smallest` bytes.
    TooBig { smallest: u64, floor: FitChoice },
}

/// Number of workers for `photos` photos: the machine's cores, or `requested`.
pub fn worker_count(requested: Option<usize>, photos: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    requested.unwrap_or(cores).clamp(1, photos.max(1))
}

/// Process every photo with `opts`, in parallel; results in input order.
pub(crate) fn process_all(
    paths: &[PathBuf],
    opts: &ImageOptions,
    threads: usize,
    stop: &StopFlag,
) -> Result<Vec<ProcessedImage>, BatchError> {
    parallel_map(paths, threads, stop, |path| {
        super::process_image(path, opts)
    })
}

/// Search for settings under which `archive_len(photo sizes)` is at most `limit`.
pub(crate) fn fit(
    paths: &[PathBuf],
    opts: &ImageOptions,
    threads: usize,
    stop: &StopFlag,
    limit: u64,
    archive_len: &(dyn Fn(&[u64]) -> u64 + Sync),
) -> Result<FitOutcome, BatchError> {
    let qualities = quality_ladder(opts.quality);
    let long_sides = long_side_ladder(paths, opts, threads, stop)?;
    let floor = FitChoice {
        quality: *qualities.last().expect("never empty"),
        max_dim: *long_sides.last().expect("never empty"),
    };
    let mut smallest = u64::MAX;
    for (level, &max_dim) in long_sides.iter().enumerate() {
        // The first quality is tried in full: when it fits (the common case),
        // these are the photos that get sealed.
        let top = ImageOptions {
            quality: qualities[0],
            max_dim,
            keep_original: false,
        };
        let images = process_all(paths, &top, threads, stop)?;
        if archive_len(&sizes_of(&images)) <= limit {
            let choice = FitChoice {
                quality: top.quality,
                max_dim,
            };
            return Ok(FitOutcome::Fits { images, choice });
        }
        drop(images);
        if level == 0 {
            // Before searching, make sure the floor fits at all, so that an
            // impossible limit is refused after one more pass, not a whole search.
            let sizes = parallel_map(paths, threads, stop, |path| {
                Ok(sizes_at(path, floor.max_dim, &[floor.quality])?[0])
            })?;
            smallest = archive_len(&sizes);
            if smallest > limit {
                return Ok(FitOutcome::TooBig { smallest, floor });
            }
        }
        // The lower qualities are measured from one decode of each photo, keeping
        // only the sizes; the chosen setting is then encoded once more.
        let lower = &qualities[1..];
        if lower.is_empty() {
            continue;
        }
        let table = parallel_map(paths, threads, stop, |path| sizes_at(path, max_dim, lower))?;
        for (column, &quality) in lower.iter().enumerate() {
            let sizes: Vec<u64> = table.iter().map(|row| row[column]).collect();
            let len = archive_len(&sizes);
            if len <= limit {
                let chosen = ImageOptions {
                    quality,
                    max_dim,
                    keep_original: false,
                };
                let images = process_all(paths, &chosen, threads, stop)?;
                debug_assert_eq!(archive_len(&sizes_of(&images)), len, "deterministic");
                return Ok(FitOutcome::Fits {
                    images,
                    choice: FitChoice { quality, max_dim },
                });
            }
        }
    }
    // Reached only if a photo changed on disk during the search.
    Ok(FitOutcome::TooBig { smallest, floor })
}

fn sizes_of(images: &[ProcessedImage]) -> Vec<u64> {
    images.iter().map(|i| i.bytes.len() as u64).collect()
}

/// Output sizes of one photo at each quality, from one decode.
fn sizes_at(path: &Path, max_dim: Option<u32>, qualities: &[u8]) -> Result<Vec<u64>, ImageError> {
    let photo = DecodedPhoto::decode(path, read_input(path)?)?;
    let rendered = photo.render(max_dim)?;
    qualities
        .iter()
        .map(|&q| Ok(photo.encode(&rendered, q)?.bytes.len() as u64))
        .collect()
}

/// The requested quality, then each multiple of 5 below it down to the floor.
fn quality_ladder(requested: u8) -> Vec<u8> {
    let mut ladder = vec![requested];
    let mut q = requested - requested % 5;
    while q >= FIT_MIN_QUALITY {
        if q < requested {
            ladder.push(q);
        }
        q -= 5;
    }
    ladder
}

/// The size limits to try: the requested one (or none), then each smaller step
/// that would actually shrink the largest photo.
fn long_side_ladder(
    paths: &[PathBuf],
    opts: &ImageOptions,
    threads: usize,
    stop: &StopFlag,
) -> Result<Vec<Option<u32>>, BatchError> {
    let longest = parallel_map(paths, threads, stop, |path| {
        check_options(path, opts)?;
        let bytes = read_input(path)?;
        let (w, h) = super::read_header(path, &bytes)?.stored;
        Ok(w.max(h))
    })?
    .into_iter()
    .max()
    .unwrap_or(0);
    let start = opts.max_dim.unwrap_or(u32::MAX).min(longest);
    let mut ladder = vec![opts.max_dim];
    ladder.extend(
        FIT_LONG_SIDES
            .iter()
            .filter(|&&side| side < start)
            .map(|&side| Some(side)),
    );
    Ok(ladder)
}

/// Run `job` over `paths` on `threads` workers; results in input order. After a
/// failure no new job starts, and the failure of the earliest photo is returned.
fn parallel_map<T: Send>(
    paths: &[PathBuf],
    threads: usize,
    stop: &StopFlag,
    job: impl Fn(&Path) -> Result<T, ImageError> + Sync,
) -> Result<Vec<T>, BatchError> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T, BatchError>>>> =
        Mutex::new((0..paths.len()).map(|_| None).collect());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= paths.len() || failed.load(Ordering::Relaxed) {
                return;
            }
            let result = if stop.is_set() {
                Err(BatchError::Interrupted)
            } else {
                // A decoder that panics on a hostile file fails that photo, by
                // name, and stops the batch like any other failure.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&paths[i])))
                    .unwrap_or_else(|_| {
                        Err(ImageError::Damaged {
                            path: paths[i].clone(),
                            reason: "the decoder failed on it".into(),
                        })
                    })
                    .map_err(BatchError::from)
            };
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
        }
    };
    let threads = threads.clamp(1, paths.len().max(1));
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(work);
            }
        });
    }
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(paths.len());
    for result in results {
        match result {
            Some(Ok(value)) => out.push(value),
            Some(Err(e)) => return Err(e),
            // Not started because an earlier photo failed: that failure follows.
            None => continue,
        }
    }
    // Jobs are handed out in order, so a photo was left unstarted only after an
    // earlier one failed, and that failure was returned above.
    debug_assert_eq!(out.len(), paths.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_job_fails_its_photo_by_name_and_stops_the_batch() {
        let paths: Vec<PathBuf> = ["a.jpg", "b.jpg", "c.jpg"].map(PathBuf::from).to_vec();
        let started = AtomicUsize::new(0);
        let result = parallel_map(&paths, 1, &StopFlag::none(), |path| {
            started.fetch_add(1, Ordering::Relaxed);
            if path.ends_with("b.jpg") {
                panic!("a decoder bug");
            }
            Ok(())
        });
        match result {
            Err(BatchError::Image(ImageError::Damaged { path, .. })) => {
                assert_eq!(path, PathBuf::from("b.jpg"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(started.load(Ordering::Relaxed), 2, "c.jpg was not started");
    }

    #[test]
    fn quality_ladder_steps_down_by_five_to_the_floor() {
        assert_eq!(quality_ladder(80), vec![80, 75, 70, 65, 60, 55, 50]);
        assert_eq!(quality_ladder(83), vec![83, 80, 75, 70, 65, 60, 55, 50]);
        assert_eq!(quality_ladder(50), vec![50]);
        assert_eq!(quality_ladder(30), vec![30]);
        assert_eq!(quality_ladder(100)[..3], [100, 95, 90]);
    }

    #[test]
    fn worker_count_is_at_least_one_and_at_most_one_per_photo() {
        assert_eq!(worker_count(Some(8), 3), 3);
        assert_eq!(worker_count(Some(0), 3), 1);
        assert_eq!(worker_count(Some(2), 0), 1);
        assert!(worker_count(None, 100) >= 1);
    }
}
