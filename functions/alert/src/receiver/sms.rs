//! One SMS: a text of at most [`TEXT_MAX`] characters of the GSM 03.38 basic set, so that it
//! is sent as a single message (160 GSM-7 characters; a character outside the set would make
//! it UCS-2, 70 characters; "SMS character limits", AWS End User Messaging SMS User Guide).
//! SNS puts the topic's display name and `> ` before a topic's SMS: [`TEXT_MAX`] leaves room
//! for a display name of up to ten GSM-7 characters.

use vigil_shared::Notification;

use crate::outbox::Owed;
use crate::receiver::facts::Facts;

/// Characters in one GSM-7 SMS.
pub const SMS_MAX: usize = 160;
/// The longest display name a topic may have for its SMS to stay one message.
pub const DISPLAY_NAME_MAX: usize = 10;
/// Characters of Vigil's text in one SMS: what the display name and `> ` leave.
pub const TEXT_MAX: usize = SMS_MAX - DISPLAY_NAME_MAX - 2;

/// `c` as a character of the GSM 03.38 basic set that counts once: ASCII letters, digits and
/// the punctuation the set holds; the others become their nearest look-alike, or `?`.
fn gsm(c: char) -> char {
    match c {
        'a'..='z' | 'A'..='Z' | '0'..='9' | ' ' => c,
        '!' | '"' | '#' | '$' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-' | '.'
        | '/' | ':' | ';' | '<' | '=' | '>' | '?' | '@' | '_' => c,
        '[' | '{' => '(',
        ']' | '}' => ')',
        '|' | '\\' => '/',
        '~' => '-',
        '`' => '\'',
        '\n' | '\r' | '\t' => ' ',
        _ => '?',
    }
}

/// The SMS text: the status, the alert's name and its summary, cut to [`TEXT_MAX`].
pub fn text(owed: &Owed) -> String {
    let facts = Facts::of(owed);
    let summary = facts.summary(&owed.notification.subject);
    let mut text = format!(
        "{} {}: {}",
        owed.status.as_str().to_uppercase(),
        facts.alertname,
        summary
    );
    if owed.kind == crate::outbox::Kind::Group {
        text = owed.notification.subject.clone();
    }
    let mut clean: String = text.chars().map(gsm).collect();
    // Runs of spaces left by line breaks count as one.
    while clean.contains("  ") {
        clean = clean.replace("  ", " ");
    }
    let clean = clean.trim();
    if clean.chars().count() <= TEXT_MAX {
        return clean.to_owned();
    }
    let kept: String = clean.chars().take(TEXT_MAX - 3).collect();
    format!("{}...", kept.trim_end())
}

/// The message an SMS topic publishes: the text alone (no JSON details, which an SMS
/// subscriber would receive as such).
pub fn render(owed: &Owed) -> Notification {
    Notification {
        subject: owed.notification.subject.clone(),
        message: text(owed),
        attributes: owed.notification.attributes.clone(),
        details: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::tests::owed;
    use proptest::prelude::*;

    #[test]
    fn an_sms_names_the_status_the_alert_and_its_summary() {
        let o = owed("CheckoutDown", "Checkout is failing 31 % of requests");
        assert_eq!(
            text(&o),
            "FIRING CheckoutDown: Checkout is failing 31 % of requests"
        );
    }

    #[test]
    fn a_long_or_unicode_summary_still_fits_one_gsm_sms() {
        let o = owed("CheckoutDown", &"Latenz über dem Ziel — {p99} ".repeat(20));
        let t = text(&o);
        assert_eq!(t.chars().count(), TEXT_MAX);
        assert!(t.ends_with("..."));
        assert!(t.chars().all(|c| c.is_ascii() && gsm(c) == c), "{t}");
    }

    proptest! {
        #[test]
        fn any_text_is_one_sms(name in "\\PC{0,40}", summary in "\\PC{0,400}") {
            let t = text(&owed(&name, &summary));
            prop_assert!(t.chars().count() <= TEXT_MAX);
            prop_assert!(t.chars().all(|c| gsm(c) == c));
        }
    }
}
