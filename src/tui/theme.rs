//! Every style the TUI uses, in one place, so `NO_COLOR` is honoured by
//! construction: with it set, no style here carries a colour, only
//! modifiers (bold, reversed, dim), and nothing that matters is said by
//! colour alone — the environment badge, risk and statuses are also words.

use crate::session::describe::Tone;
use crate::sql::Risk;
use ratatui::style::{Color, Modifier, Style};

/// The palette, or its colourless stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub no_color: bool,
}

impl Theme {
    pub fn new(no_color: bool) -> Theme {
        Theme { no_color }
    }

    /// `NO_COLOR` set to anything but the empty string (<https://no-color.org>).
    pub fn no_color_from_env() -> bool {
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
    }

    fn fg(&self, c: Color) -> Style {
        if self.no_color {
            Style::new()
        } else {
            Style::new().fg(c)
        }
    }

    pub fn plain(&self) -> Style {
        Style::new()
    }

    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn dim(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            Style::new().fg(Color::DarkGray)
        }
    }

    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The border of the focused pane.
    pub fn focus(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn border(&self) -> Style {
        self.dim()
    }

    /// The selected row of a list.
    pub fn selected(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
                .bg(Color::Rgb(40, 48, 64))
                .add_modifier(Modifier::BOLD)
        }
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn info(&self) -> Style {
        self.fg(Color::Blue)
    }

    pub fn accent(&self) -> Style {
        self.fg(Color::Magenta)
    }

    /// The environment badge: prod is loud (white on red) whatever else is on
    /// screen; without colour it is reversed and bold, and always spelled out.
    pub fn env_badge(&self, environment: &str) -> Style {
        let base = Style::new().add_modifier(Modifier::BOLD);
        if self.no_color {
            return if is_prod(environment) {
                base.add_modifier(Modifier::REVERSED)
            } else {
                base
            };
        }
        let (fg, bg) = if is_prod(environment) {
            (Color::White, Color::Red)
        } else if environment.to_ascii_lowercase().starts_with("stag") {
            (Color::Black, Color::Yellow)
        } else {
            (Color::Black, Color::Green)
        };
        base.fg(fg).bg(bg)
    }

    /// Risk classes, in the colours `ward explain` uses.
    pub fn risk(&self, risk: Risk) -> Style {
        super::cells::tone_style(Tone::of_risk(risk), self)
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// An editable field.
    pub fn input(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::UNDERLINED)
        } else {
            Style::new().bg(Color::Rgb(30, 30, 30)).fg(Color::White)
        }
    }

    /// SQL token styles.
    pub fn sql_keyword(&self) -> Style {
        self.fg(Color::Blue).add_modifier(Modifier::BOLD)
    }

    pub fn sql_string(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn sql_number(&self) -> Style {
        self.fg(Color::Magenta)
    }

    pub fn sql_comment(&self) -> Style {
        self.dim().add_modifier(Modifier::ITALIC)
    }

    pub fn sql_param(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
}

/// Whether an environment is production: its name is `prod`, `production`
/// or starts with `prod-` / `prod_`. The approval dialog asks for the name
/// typed out for these.
pub fn is_prod(environment: &str) -> bool {
    let e = environment.to_ascii_lowercase();
    e == "prod" || e == "production" || e.starts_with("prod-") || e.starts_with("prod_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prod_names_are_recognised_and_others_are_not() {
        for e in ["prod", "PROD", "production", "prod-eu", "prod_us"] {
            assert!(is_prod(e), "{e}");
        }
        for e in ["staging", "dev", "preprod", "product", ""] {
            assert!(!is_prod(e), "{e}");
        }
    }

    #[test]
    fn no_color_styles_carry_no_colour() {
        let t = Theme::new(true);
        for s in [
            t.title(),
            t.ok(),
            t.warn(),
            t.bad(),
            t.env_badge("prod"),
            t.env_badge("dev"),
            t.risk(Risk::Destructive),
            t.selected(),
            t.input(),
            t.sql_keyword(),
            t.dim(),
        ] {
            assert_eq!((s.fg, s.bg), (None, None), "{s:?}");
        }
        assert!(
            t.env_badge("prod")
                .add_modifier
                .contains(Modifier::REVERSED)
        );
    }
}
