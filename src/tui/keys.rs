//! Key bindings as data: one table, read by `update` to turn a key into an
//! action and by the help overlay and the status bar to show the keys, so
//! what is shown is always what works.
//!
//! No binding here approves anything by itself: `a` only opens the approval
//! form; approving takes a reason (and, in prod, the environment's name)
//! and Enter in that form. Esc and Ctrl-C are bound to closing, cancelling
//! or quitting, never to approving.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A key with its modifiers (Shift is folded into the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub const fn code(code: KeyCode) -> Key {
        Key {
            code,
            mods: KeyModifiers::NONE,
        }
    }

    pub const fn ch(c: char) -> Key {
        Key::code(KeyCode::Char(c))
    }

    pub const fn ctrl(c: char) -> Key {
        Key {
            code: KeyCode::Char(c),
            mods: KeyModifiers::CONTROL,
        }
    }

    /// The key as a binding names it: Shift is dropped where the code
    /// already says it (an upper-case letter, BackTab).
    pub fn from_event(ev: &KeyEvent) -> Key {
        let mut mods = ev.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
        if !matches!(ev.code, KeyCode::Char(_) | KeyCode::BackTab) {
            mods |= ev.modifiers & KeyModifiers::SHIFT;
        }
        Key {
            code: ev.code,
            mods,
        }
    }

    /// How the key is written in the help and the status bar.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Backspace => "Bksp".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            other => format!("{other:?}"),
        };
        if self.mods.contains(KeyModifiers::CONTROL) {
            format!("Ctrl-{}", base.to_uppercase())
        } else {
            base
        }
    }
}

/// What a key does. `update` matches on these, never on raw keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Help,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    NextPane,
    PrevPane,
    Filter,
    FilterDone,
    FilterClear,
    Open,
    /// Opens the approval form (never approves by itself).
    Approve,
    /// Opens the rejection form.
    Reject,
    /// Cancel the running query (asks to press again).
    CancelQuery,
    Standing,
    Revoke,
    /// Opens the form to answer the agent's question.
    Answer,
    ReplayNext,
    ReplayPrev,
    ReplayStart,
    ReplayEnd,
    Back,
    Close,
    Submit,
    NextField,
    PrevField,
    DeleteChar,
    Toggle,
    /// Continue into the runbook the conclusion names (`next`).
    FollowNext,
}

/// Where a binding applies. `update` asks for the contexts in force, most
/// specific first; the first binding that matches wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Everywhere but modal dialogs and text fields.
    Global,
    /// Moving around lists and panes.
    Lists,
    Home,
    /// Typing the runbook filter.
    Filter,
    /// The list of recorded sessions (`ward audit`).
    Audit,
    /// A live session.
    Live,
    /// Replaying a recorded session.
    Replay,
    /// The approval dialog, before choosing approve or reject.
    Dialog,
    /// The approval dialog's form.
    DialogForm,
    /// The form with the "for the rest of this session" box focused.
    DialogCheckbox,
    Help,
    StandingList,
    /// Typing an answer to the agent's question.
    AnswerForm,
    /// A live session whose conclusion names a next runbook, waiting to
    /// be told to continue.
    HandOff,
}

impl Context {
    /// The heading of this context's keys in the help overlay.
    pub fn title(self) -> &'static str {
        match self {
            Context::Global => "Everywhere",
            Context::Lists => "Moving",
            Context::Home => "Home",
            Context::Filter => "Filtering runbooks",
            Context::Audit => "Recorded sessions",
            Context::Live => "Live session",
            Context::Replay => "Replaying a session",
            Context::Dialog => "Approval dialog",
            Context::DialogForm => "Approval form",
            Context::DialogCheckbox => "Approval form, session box",
            Context::Help => "This help",
            Context::StandingList => "Standing approvals",
            Context::AnswerForm => "Answering the agent",
            Context::HandOff => "Conclusion names a next runbook",
        }
    }
}

/// One row of the key table.
#[derive(Debug)]
pub struct Binding {
    pub context: Context,
    pub keys: &'static [Key],
    pub action: Action,
    /// What the help overlay says.
    pub help: &'static str,
    /// The short word in the status bar; `None` keeps it out of the bar.
    pub hint: Option<&'static str>,
}

const fn b(
    context: Context,
    keys: &'static [Key],
    action: Action,
    help: &'static str,
    hint: Option<&'static str>,
) -> Binding {
    Binding {
        context,
        keys,
        action,
        help,
        hint,
    }
}

use Action as A;
use Context as C;

/// Every key binding of the TUI, one row each.
#[rustfmt::skip]
pub const BINDINGS: &[Binding] = &[
    // Modal contexts first: the help overlay lists them in this order too.
    b(C::Dialog, &[Key::ch('a')], A::Approve, "approve: asks for a reason (and the environment's name in prod)", Some("approve")),
    b(C::Dialog, &[Key::ch('r')], A::Reject, "reject: asks for a reason, which goes back to the agent", Some("reject")),
    b(C::Dialog, &[Key::code(KeyCode::Esc), Key::ctrl('c'), Key::ch('q')], A::Close, "close the dialog; approves and rejects nothing", Some("close")),
    b(C::Dialog, &[Key::ch('?')], A::Help, "these keys (the dialog stays open underneath)", Some("help")),
    b(C::DialogCheckbox, &[Key::ch(' ')], A::Toggle, "tick or untick: approve this same statement for the rest of this session", Some("toggle")),
    b(C::DialogForm, &[Key::code(KeyCode::Enter)], A::Submit, "submit (refused until every field is filled in right)", Some("submit")),
    b(C::DialogForm, &[Key::code(KeyCode::Tab), Key::code(KeyCode::Down)], A::NextField, "next field", Some("next field")),
    b(C::DialogForm, &[Key::code(KeyCode::BackTab), Key::code(KeyCode::Up)], A::PrevField, "previous field", None),
    b(C::DialogForm, &[Key::code(KeyCode::Backspace)], A::DeleteChar, "delete the last character", None),
    b(C::DialogForm, &[Key::code(KeyCode::Esc), Key::ctrl('c')], A::Close, "close the dialog; approves and rejects nothing", Some("close")),
    b(C::AnswerForm, &[Key::code(KeyCode::Enter)], A::Submit, "send the answer to the agent", Some("send")),
    b(C::AnswerForm, &[Key::code(KeyCode::Backspace)], A::DeleteChar, "delete the last character", None),
    b(C::AnswerForm, &[Key::code(KeyCode::Esc), Key::ctrl('c')], A::Close, "close; sends nothing", Some("close")),
    b(C::Help, &[Key::code(KeyCode::Esc), Key::ch('?'), Key::ch('q')], A::Close, "close this help", Some("close")),
    b(C::Help, &[Key::code(KeyCode::Up), Key::ch('k')], A::Up, "scroll up", None),
    b(C::Help, &[Key::code(KeyCode::Down), Key::ch('j')], A::Down, "scroll down", Some("scroll")),
    b(C::Help, &[Key::code(KeyCode::PageUp), Key::ctrl('u')], A::PageUp, "page up", None),
    b(C::Help, &[Key::code(KeyCode::PageDown), Key::ctrl('d'), Key::ch(' ')], A::PageDown, "page down", None),
    b(C::Help, &[Key::code(KeyCode::Home), Key::ch('g')], A::Top, "to the top", None),
    b(C::Help, &[Key::code(KeyCode::End), Key::ch('G')], A::Bottom, "to the bottom", None),
    b(C::StandingList, &[Key::code(KeyCode::Up), Key::ch('k')], A::Up, "previous", None),
    b(C::StandingList, &[Key::code(KeyCode::Down), Key::ch('j')], A::Down, "next", None),
    b(C::StandingList, &[Key::ch('x'), Key::code(KeyCode::Delete)], A::Revoke, "revoke the selected standing approval", Some("revoke")),
    b(C::StandingList, &[Key::code(KeyCode::Esc), Key::ch('S'), Key::ch('q')], A::Close, "close", Some("close")),
    b(C::Filter, &[Key::code(KeyCode::Enter)], A::FilterDone, "keep the filter and go back to the list", Some("done")),
    b(C::Filter, &[Key::code(KeyCode::Esc)], A::FilterClear, "clear the filter", Some("clear")),
    b(C::Filter, &[Key::code(KeyCode::Backspace)], A::DeleteChar, "delete the last character", None),
    // Screens.
    b(C::HandOff, &[Key::ch('n')], A::FollowNext, "continue into the runbook the conclusion names, in this session (its proposals are gated like the first's)", Some("next runbook")),
    b(C::Live, &[Key::ch('a')], A::Approve, "approve the selected (or first) proposal waiting for approval", Some("approve")),
    b(C::Live, &[Key::ch('r')], A::Reject, "reject the selected (or first) proposal waiting for approval", Some("reject")),
    b(C::Live, &[Key::code(KeyCode::Esc)], A::CancelQuery, "cancel the running query and end the session (press twice)", Some("cancel query")),
    b(C::Live, &[Key::ch('A')], A::Answer, "answer the agent's question", Some("answer")),
    b(C::Live, &[Key::ch('S')], A::Standing, "standing approvals: list and revoke", Some("standing")),
    b(C::Replay, &[Key::ch('n'), Key::code(KeyCode::Right)], A::ReplayNext, "replay the next event", Some("next")),
    b(C::Replay, &[Key::ch('p'), Key::code(KeyCode::Left)], A::ReplayPrev, "step back one event", Some("prev")),
    b(C::Replay, &[Key::ch('P')], A::ReplayStart, "back to the first event", None),
    b(C::Replay, &[Key::ch('N')], A::ReplayEnd, "jump to the last event", Some("end")),
    b(C::Replay, &[Key::code(KeyCode::Esc), Key::code(KeyCode::Backspace)], A::Back, "back to the list of sessions", Some("back")),
    b(C::Home, &[Key::ch('/')], A::Filter, "filter runbooks by id, title or alert name", Some("filter")),
    b(C::Home, &[Key::code(KeyCode::Enter)], A::Open, "start the runbook on the chosen target, choose a target, or replay a session", Some("open")),
    b(C::Audit, &[Key::code(KeyCode::Enter)], A::Open, "replay the selected session", Some("replay")),
    b(C::Lists, &[Key::code(KeyCode::Up), Key::ch('k')], A::Up, "up", None),
    b(C::Lists, &[Key::code(KeyCode::Down), Key::ch('j')], A::Down, "down", Some("move")),
    b(C::Lists, &[Key::code(KeyCode::PageUp), Key::ctrl('u')], A::PageUp, "page up", None),
    b(C::Lists, &[Key::code(KeyCode::PageDown), Key::ctrl('d')], A::PageDown, "page down", None),
    b(C::Lists, &[Key::code(KeyCode::Home), Key::ch('g')], A::Top, "to the top", None),
    b(C::Lists, &[Key::code(KeyCode::End), Key::ch('G')], A::Bottom, "to the bottom (the transcript follows new entries again)", None),
    b(C::Lists, &[Key::code(KeyCode::Tab)], A::NextPane, "next pane", Some("pane")),
    b(C::Lists, &[Key::code(KeyCode::BackTab)], A::PrevPane, "previous pane", None),
    b(C::Global, &[Key::ch('?')], A::Help, "this help", Some("help")),
    b(C::Global, &[Key::ch('q'), Key::ctrl('c')], A::Quit, "quit (a live session asks first, then stops waiting for approval)", Some("quit")),
];

/// The action bound to `key` in the first of `contexts` that binds it.
pub fn action(contexts: &[Context], key: Key) -> Option<Action> {
    contexts.iter().find_map(|ctx| {
        BINDINGS
            .iter()
            .find(|bd| bd.context == *ctx && bd.keys.contains(&key))
            .map(|bd| bd.action)
    })
}

/// `(keys, word)` for the status bar, from the same table.
pub fn hints(contexts: &[Context]) -> Vec<(String, &'static str)> {
    hint_actions(contexts)
        .into_iter()
        .map(|(k, w, _)| (k, w))
        .collect()
}

/// `(keys, word, action)` for the status bar: the action tells the bar
/// which hints it must never drop (help and quit).
pub fn hint_actions(contexts: &[Context]) -> Vec<(String, &'static str, Action)> {
    let mut out: Vec<(String, &'static str, Action)> = Vec::new();
    for ctx in contexts {
        for bd in BINDINGS.iter().filter(|bd| bd.context == *ctx) {
            let Some(hint) = bd.hint else { continue };
            // A more specific context already named this action.
            if out.iter().any(|(_, h, _)| *h == hint) {
                continue;
            }
            out.push((keys_label(bd.keys, 2), hint, bd.action));
        }
    }
    out
}

/// The order the help overlay lists the contexts in.
pub const HELP_ORDER: [Context; 13] = [
    Context::Global,
    Context::Lists,
    Context::Home,
    Context::Filter,
    Context::Audit,
    Context::Live,
    Context::Replay,
    Context::Dialog,
    Context::DialogForm,
    Context::DialogCheckbox,
    Context::StandingList,
    Context::AnswerForm,
    Context::HandOff,
];

/// The help overlay's rows: each context of [`HELP_ORDER`] that binds
/// anything, followed by its bindings. One line each, at any width, so
/// `update` can tell how far the help scrolls without drawing it.
pub fn help_rows() -> Vec<(Context, Option<&'static Binding>)> {
    let mut out = Vec::new();
    for ctx in HELP_ORDER {
        let rows: Vec<&'static Binding> = BINDINGS.iter().filter(|b| b.context == ctx).collect();
        if rows.is_empty() {
            continue;
        }
        out.push((ctx, None));
        out.extend(rows.into_iter().map(|b| (ctx, Some(b))));
    }
    out
}

/// "a/Esc" — the first `max` keys of a binding.
pub fn keys_label(keys: &[Key], max: usize) -> String {
    keys.iter()
        .take(max)
        .map(Key::label)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_context() {
        for (i, x) in BINDINGS.iter().enumerate() {
            for y in &BINDINGS[i + 1..] {
                if x.context == y.context {
                    for k in x.keys {
                        assert!(!y.keys.contains(k), "{k:?} twice in {:?}", x.context);
                    }
                }
            }
        }
    }

    #[test]
    fn esc_and_ctrl_c_never_approve_anywhere() {
        for bd in BINDINGS {
            if bd.keys.contains(&Key::code(KeyCode::Esc)) || bd.keys.contains(&Key::ctrl('c')) {
                assert!(
                    !matches!(bd.action, Action::Approve | Action::Submit | Action::Toggle),
                    "{bd:?}"
                );
            }
        }
    }

    #[test]
    fn shift_is_folded_into_letters_and_kept_off_plain_keys() {
        let ev = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&ev), Key::ch('G'));
        let ev = KeyEvent::new(KeyCode::Char('?'), KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&ev), Key::ch('?'));
        let ev = KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&ev), Key::code(KeyCode::BackTab));
        let ev = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(Key::from_event(&ev), Key::ctrl('c'));
    }

    #[test]
    fn the_first_context_that_binds_a_key_wins() {
        let esc = Key::code(KeyCode::Esc);
        assert_eq!(
            action(&[C::Live, C::Lists, C::Global], esc),
            Some(A::CancelQuery)
        );
        assert_eq!(
            action(&[C::Replay, C::Lists, C::Global], esc),
            Some(A::Back)
        );
        assert_eq!(action(&[C::Dialog], Key::ch('?')), Some(A::Help));
        assert_eq!(
            action(&[C::DialogForm], Key::ch('?')),
            None,
            "in the form, ? is typed into the reason"
        );
        assert_eq!(
            hints(&[C::Dialog]),
            vec![
                ("a".to_string(), "approve"),
                ("r".to_string(), "reject"),
                ("Esc/Ctrl-C".to_string(), "close"),
                ("?".to_string(), "help")
            ]
        );
    }
}
