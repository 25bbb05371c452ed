//! Resizing a block where it is (`realloc` of a medium block or a large mapping): the
//! outcome both kinds report, and the charge for the extra pages, which stays with the
//! block's owner group whoever resizes it.

use crate::memcg;

/// Why a block could not be resized where it is (it is then unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotResized {
    /// The owner group, which is also the caller's, refused the extra pages after its
    /// whole charge path (reclaim, OOM handler): a new block would be refused too.
    Refused,
    /// Too large, no room to grow into, or the owner group (not the caller's) refused
    /// without reclaim: a new block in the caller's group may still work.
    NoRoom,
}

/// Charges `pages` more to `group`, the owner of a block growing in place. Only a caller
/// in that group runs its whole charge path; others try it without reclaim and fall
/// back to a new block in their own group.
pub fn charge_growth(group: u32, pages: u64) -> Result<(), NotResized> {
    let own = group == memcg::threads::current_group();
    let flags = if own { 0 } else { memcg::charge::NORETRY };
    memcg::charge::try_charge(group, pages, flags).map_err(|_| {
        if own {
            NotResized::Refused
        } else {
            NotResized::NoRoom
        }
    })
}
