//! What a change's outcome looks like to the caller: the applied generation with the
//! before and after of what was edited, or why nothing changed, as a status that says
//! whose fault it is (400/404/409 the request's, 422 the resulting policy's, 409 a
//! file on disk that no longer validates, 500 the machine's).

use super::Response;
use super::replies;
use crate::persist::{Done, EditError, PersistError};

fn edit_status(e: &EditError) -> u16 {
    match e {
        EditError::NotFound(_) => 404,
        EditError::Conflict(_) => 409,
        EditError::Invalid { .. } => 400,
    }
}

pub(super) fn refused(e: PersistError) -> Response {
    match &e {
        PersistError::Edit(x) => Response::error(edit_status(x), x.to_string()),
        PersistError::Invalid(c) => Response::config(
            422,
            "refused: the changed policy does not validate; nothing was changed",
            c,
        ),
        PersistError::Disk(c) => Response::config(
            409,
            "refused: the policy file on disk does not validate (edited by hand?); fix it first",
            c,
        ),
        PersistError::Install(_) | PersistError::Io { .. } => Response::error(500, e.to_string()),
    }
}

pub(super) fn applied_reply(a: &crate::Applied) -> replies::Applied {
    replies::Applied {
        generation: a.generation,
        added: a.added,
        removed: a.removed,
        draining: a.draining,
    }
}

pub(super) fn applied(done: Done, status: u16) -> Response {
    Response {
        status,
        body: replies::to_body(&replies::Changed {
            applied: applied_reply(&done.applied),
            before: done.edited.before,
            after: done.edited.after,
        }),
    }
}
