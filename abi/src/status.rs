//! The status of a reply (`OXIIDA_STATUS_*`): OK, or the kind of error.

use std::fmt;

/// `oxiida_reply.status` and what `resolve` answers. The numbers are the
/// header's and never change; a number this enum does not know is refused by
/// [`Status::try_from`] rather than guessed at.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `OXIIDA_STATUS_OK`.
    Ok = 0,
    /// The plugin (or host) has no such function.
    NotFound = 1,
    /// An argument could not be converted for the plugin (before version 4,
    /// a result that could not cross was answered with this status too).
    BadArguments = 2,
    /// The foreign code raised an exception or error.
    Raised = 3,
    /// The worker running the call died.
    WorkerCrashed = 4,
    /// A bug or a resource failure in the host or the plugin.
    Internal = 5,
    /// (Version 4.) The function ran, but its result cannot cross back
    /// ("cannot return set from `f`: ..."): the message stands alone.
    BadResult = 6,
}

impl Status {
    /// Every status, in the header's order.
    pub const ALL: [Status; 7] =
        [Status::Ok, Status::NotFound, Status::BadArguments, Status::Raised, Status::WorkerCrashed, Status::Internal, Status::BadResult];

    /// A few words for messages: "not found", "raised", ...
    pub fn describe(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotFound => "not found",
            Status::BadArguments => "bad arguments",
            Status::Raised => "raised",
            Status::WorkerCrashed => "worker crashed",
            Status::Internal => "internal error",
            Status::BadResult => "bad result",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl From<Status> for u32 {
    fn from(status: Status) -> u32 {
        status as u32
    }
}

/// A status number the header does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0} (the header defines 0 to 6)")]
pub struct UnknownStatus(pub u32);

impl TryFrom<u32> for Status {
    type Error = UnknownStatus;

    fn try_from(n: u32) -> Result<Status, UnknownStatus> {
        Status::ALL.get(n as usize).copied().ok_or(UnknownStatus(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_ones_are_refused() {
        for s in Status::ALL {
            assert_eq!(Status::try_from(u32::from(s)), Ok(s));
        }
        assert_eq!(Status::try_from(7), Err(UnknownStatus(7)));
        assert_eq!(Status::try_from(u32::MAX), Err(UnknownStatus(u32::MAX)));
    }
}
