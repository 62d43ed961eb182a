//! The approval dialog: its state (which proposal, which stage, what was
//! typed) and what its keys do. The only [`Op::Approve`] the TUI ever
//! emits comes from [`submit`] here: Enter in the approval form, with a
//! non-empty reason, the environment's name typed out in prod, for a
//! proposal that still waits. Closing approves and rejects nothing.
//!
//! Pure like the rest of `update`: no I/O, no clock.

use crate::session::Status;
use crate::session::events::ProposalId;
use crate::session::runner::Op;

use super::app::{App, Cmd, Overlay};
use super::keys::{Action, Context};
use super::session::{SessionView, offers_for_session};
use super::theme::is_prod;

/// The approval dialog's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogMode {
    /// Shows what would run and why it needs approval; `a` or `r` next.
    Choose,
    Approve,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Reason,
    /// The environment's name, typed out (prod only).
    Confirm,
    /// "Approve this same statement for the rest of this session".
    ForSession,
}

/// The approval dialog for one proposal. What it shows is read from the
/// session state at each frame, so approvals arriving from other operators
/// appear while it is open.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalDialog {
    pub proposal: ProposalId,
    pub mode: DialogMode,
    pub reason: String,
    pub confirm: String,
    pub for_session: bool,
    pub field: Field,
    pub error: Option<String>,
}

impl ApprovalDialog {
    pub fn new(proposal: ProposalId, mode: DialogMode) -> ApprovalDialog {
        ApprovalDialog {
            proposal,
            mode,
            reason: String::new(),
            confirm: String::new(),
            for_session: false,
            field: Field::Reason,
            error: None,
        }
    }
}

/// The fields of the form, in Tab order.
pub fn dialog_fields(d: &ApprovalDialog, session: &SessionView) -> Vec<Field> {
    let mut f = vec![Field::Reason];
    if d.mode == DialogMode::Approve {
        if is_prod(session.environment()) {
            f.push(Field::Confirm);
        }
        if session
            .state
            .proposal(&d.proposal)
            .is_some_and(offers_for_session)
        {
            f.push(Field::ForSession);
        }
    }
    f
}

/// The key contexts while the dialog is up, most specific first.
pub(super) fn contexts(d: &ApprovalDialog, s: &SessionView) -> Vec<Context> {
    match d.mode {
        DialogMode::Choose => vec![Context::Dialog],
        _ if d.field == Field::ForSession && dialog_fields(d, s).contains(&Field::ForSession) => {
            vec![Context::DialogCheckbox, Context::DialogForm]
        }
        _ => vec![Context::DialogForm],
    }
}

/// Opens the dialog for proposal `id` at `mode`. A message in the status
/// bar was about something else: it goes.
pub(super) fn open(app: &mut App, id: ProposalId, mode: DialogMode) {
    app.dialog = Some(ApprovalDialog::new(id, mode));
    app.notice = None;
}

/// Opens the dialog for the next queued proposal.
pub(super) fn open_next(app: &mut App) {
    if let Some(id) = app.session.as_mut().and_then(|s| s.queue.pop_front()) {
        open(app, id, DialogMode::Choose);
    }
}

/// A typed character goes into the form's text field in focus.
pub(super) fn type_char(d: &mut ApprovalDialog, c: char) {
    if d.mode == DialogMode::Choose {
        return;
    }
    let field = match d.field {
        Field::Reason => &mut d.reason,
        Field::Confirm => &mut d.confirm,
        Field::ForSession => return,
    };
    if field.chars().count() < 500 {
        field.push(c);
    }
    d.error = None;
}

/// A paste goes into the text field in focus (it never submits).
pub(super) fn paste(d: &mut ApprovalDialog, clean: &str) {
    match (d.mode, d.field) {
        (DialogMode::Choose, _) | (_, Field::ForSession) => {}
        (_, Field::Reason) => d.reason.push_str(clean),
        (_, Field::Confirm) => d.confirm.push_str(clean),
    }
}

pub(super) fn action(app: &mut App, action: Action) -> Option<Cmd> {
    let (Some(d), Some(s)) = (app.dialog.as_mut(), app.session.as_ref()) else {
        return None;
    };
    match action {
        Action::Close => {
            // Closing approves nothing and rejects nothing; the proposal
            // keeps waiting and `a` opens the dialog again.
            app.dialog = None;
            let waiting = s.state.awaiting_approval().len();
            if waiting > 0 {
                app.note(format!(
                    "closed: nothing approved or rejected; {waiting} still waiting"
                ));
            }
            None
        }
        Action::Approve => {
            d.mode = DialogMode::Approve;
            d.field = Field::Reason;
            d.error = None;
            app.notice = None;
            None
        }
        Action::Reject => {
            d.mode = DialogMode::Reject;
            d.field = Field::Reason;
            d.error = None;
            app.notice = None;
            None
        }
        Action::NextField | Action::PrevField => {
            let fields = dialog_fields(d, s);
            let at = fields.iter().position(|f| *f == d.field).unwrap_or(0);
            let n = fields.len();
            let next = if action == Action::NextField {
                (at + 1) % n
            } else {
                (at + n - 1) % n
            };
            d.field = fields[next];
            None
        }
        Action::DeleteChar => {
            match d.field {
                Field::Reason => {
                    d.reason.pop();
                }
                Field::Confirm => {
                    d.confirm.pop();
                }
                Field::ForSession => {}
            }
            None
        }
        Action::Toggle => {
            if d.field == Field::ForSession && dialog_fields(d, s).contains(&Field::ForSession) {
                d.for_session = !d.for_session;
            }
            None
        }
        Action::Submit => submit(app),
        // Help opens over the dialog, which stays as it was underneath.
        Action::Help => {
            app.overlay = Some(Overlay::Help { scroll: 0 });
            None
        }
        _ => None,
    }
}

/// Enter in the form: checks every condition, then emits the one op.
fn submit(app: &mut App) -> Option<Cmd> {
    let (Some(d), Some(s)) = (app.dialog.as_mut(), app.session.as_ref()) else {
        return None;
    };
    let Some(p) = s
        .state
        .proposal(&d.proposal)
        .filter(|p| p.status == Status::AwaitingApproval)
    else {
        app.dialog = None;
        app.warn("that proposal no longer waits for approval");
        return None;
    };
    let reason = d.reason.trim().to_string();
    let step = p.step_id.clone().unwrap_or_else(|| "ad-hoc".into());
    let cmd = match d.mode {
        DialogMode::Choose => return None,
        DialogMode::Reject => {
            if reason.is_empty() {
                d.error = Some("a rejection needs a reason: it goes back to the agent".into());
                d.field = Field::Reason;
                return None;
            }
            Cmd::SendOp(Op::Reject {
                proposal: p.id.clone(),
                operator: app.operator.clone(),
                reason,
            })
        }
        DialogMode::Approve => {
            if p.approvals.iter().any(|(o, _)| *o == app.operator) {
                d.error = Some(format!(
                    "{} already approved this; a different operator must give the next approval",
                    app.operator
                ));
                return None;
            }
            if reason.is_empty() {
                d.error = Some("an approval needs a reason".into());
                d.field = Field::Reason;
                return None;
            }
            let env = s.environment();
            if is_prod(env) && d.confirm.trim() != env {
                d.error = Some(format!("type the environment's name, {env}, to confirm"));
                d.field = Field::Confirm;
                return None;
            }
            Cmd::SendOp(Op::Approve {
                proposal: p.id.clone(),
                operator: app.operator.clone(),
                reason,
                for_session: d.for_session && offers_for_session(p),
            })
        }
    };
    let word = if d.mode == DialogMode::Approve {
        "approval"
    } else {
        "rejection"
    };
    app.dialog = None;
    // The next dialog opens first: it clears the bar, and this message is
    // the news.
    open_next(app);
    app.note(format!("{word} of {step} sent"));
    Some(cmd)
}
