//! The allocator: size classes, spans carved from aligned segments, per-(thread, group)
//! heaps and large mappings. Every page run is charged to a group with the accounting
//! engine's `try_charge`, recorded in its holder's charge record (`charged`) in the same
//! step, and uncharged from what the record says (DESIGN.md, "One truth for charged").
//!
//! Map, bottom up, in the layers DESIGN.md lists (each file imports only from files
//! below it): `size_class` (the classes), `charged` (the charge a span or mapping
//! holds), `meta` (pools for heaps and thread states), `resize` (growth charges);
//! `types` (the shared structures, as mimalloc's `types.h`); `segmap` (which memory is
//! ours), `freemap` (the live map: where handed-out small blocks start), `tls` (the TLS
//! words); `span` (blocks of one class, three free lists); `inflight` (remote pushes in
//! flight, which `malloc_trim` waits out); `segment` (4 MiB regions of 64 KiB slices); `abandoned` (segments of exited threads); `tld` (a thread's owned
//! segments and cache lock); `heap` (one thread's spans for one group); `harvest`
//! (cached mappings' pages moved into new blocks); `large` (blocks in their own
//! mappings) and `medium` (blocks up to 1 MiB, a span each); `remote` (frees into spans
//! other threads own, in chains, or exited threads owned); `retired` (exited threads'
//! states kept for the next thread); `thread` (a thread's set-up and exit); `free` (the
//! free path) and `account` (statistics and reclaim for the accounting engine); `fork`
//! (the `pthread_atfork` handlers); `front` (entry points).

pub mod abandoned;
pub mod account;
pub mod charged;
pub mod fork;
pub mod free;
pub mod freemap;
pub mod front;
pub mod harvest;
pub mod heap;
pub mod inflight;
pub mod large;
pub mod medium;
pub mod meta;
pub mod remote;
pub mod resize;
pub mod retired;
pub mod segmap;
pub mod segment;
pub mod size_class;
pub mod span;
pub mod thread;
pub mod tld;
pub mod tls;
pub mod types;

pub use front::{aligned, calloc, free, malloc, realloc, usable_size, zeroed};
