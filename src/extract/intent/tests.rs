use std::sync::LazyLock;

use super::*;
use crate::extract::fold::fold_text;

static RULES: LazyLock<IntentRules> =
    LazyLock::new(|| IntentRules::built_in().expect("the built-in rules load"));

fn classify(text: &str) -> Intent {
    RULES.classify(&fold_text(text))
}

/// Classifies every text and reports all mismatches at once.
fn assert_categories(cases: &[(&str, Category)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(text, expected)| {
            let intent = classify(text);
            (intent.category != *expected).then(|| {
                format!(
                    "{text:?}: got {}, expected {expected}, scores {:?}",
                    intent.category, intent.scores
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn customer_wording_maps_to_its_category_in_every_language() {
    use Category::*;
    let cases: &[(&str, Category)] = &[
        // cash_refund
        (
            "Hi, I bought the 50 credit pack yesterday and would like a refund please.",
            CashRefund,
        ),
        (
            "Can I get my money back? I haven't used any credits.",
            CashRefund,
        ),
        ("I was charged twice for the same pack.", CashRefund),
        ("Please cancel my order and send back my money.", CashRefund),
        (
            "Ich hätte gerne eine Rückerstattung, ich habe die Credits nicht benutzt.",
            CashRefund,
        ),
        (
            "Bitte Geld zurück, ich habe versehentlich doppelt bezahlt.",
            CashRefund,
        ),
        ("Ich möchte mein Geld zurück.", CashRefund),
        (
            "Bonjour, je souhaite être remboursé de mon achat.",
            CashRefund,
        ),
        (
            "Pouvez-vous me rembourser ? Je n'ai jamais utilisé les crédits.",
            CashRefund,
        ),
        (
            "Hola, quiero un reembolso de mi compra por favor.",
            CashRefund,
        ),
        (
            "Solicito la devolución de mi dinero, no he usado ningún crédito.",
            CashRefund,
        ),
        // failed_generation
        (
            "The generation failed and my credits were taken but no image arrived.",
            FailedGeneration,
        ),
        (
            "I got an error and no avatar was generated.",
            FailedGeneration,
        ),
        (
            "It has been stuck loading forever, nothing was delivered.",
            FailedGeneration,
        ),
        (
            "Die Generierung ist fehlgeschlagen, ich habe kein Bild bekommen.",
            FailedGeneration,
        ),
        (
            "Es kam nur eine Fehlermeldung, nichts wurde erstellt.",
            FailedGeneration,
        ),
        (
            "La génération a échoué et je n'ai reçu aucune image.",
            FailedGeneration,
        ),
        (
            "J'ai eu un message d'erreur, rien n'a été généré.",
            FailedGeneration,
        ),
        (
            "La generación falló y no recibí ninguna imagen.",
            FailedGeneration,
        ),
        ("Me salió un error y no se generó nada.", FailedGeneration),
        // no_resemblance
        ("The avatar doesn't look like me at all.", NoResemblance),
        (
            "Honestly it looks like a completely different person.",
            NoResemblance,
        ),
        (
            "There is zero resemblance, my friends could not recognize me.",
            NoResemblance,
        ),
        ("It doesn't resemble my daughter in any way.", NoResemblance),
        ("Das Bild sieht mir überhaupt nicht ähnlich.", NoResemblance),
        ("Das bin nicht ich, völlig andere Person.", NoResemblance),
        ("Le résultat ne me ressemble pas du tout.", NoResemblance),
        ("Ce n'est pas moi, c'est quelqu'un d'autre.", NoResemblance),
        ("El avatar no se parece a mí en nada.", NoResemblance),
        ("No soy yo, parece otra persona.", NoResemblance),
        // wrong_style
        (
            "I picked the Ghibli style but got something realistic. Wrong style.",
            WrongStyle,
        ),
        ("This is not the style I selected.", WrongStyle),
        ("Falscher Stil, ich hatte Anime gewählt.", WrongStyle),
        ("Das ist nicht der Stil, den ich bestellt habe.", WrongStyle),
        ("Mauvais style : j'avais choisi manga.", WrongStyle),
        ("Ce n'est pas le style que j'ai choisi.", WrongStyle),
        ("Estilo equivocado, elegí anime.", WrongStyle),
        ("No es el estilo que pedí.", WrongStyle),
        // broken_anatomy
        (
            "The hands have extra fingers and the face is distorted.",
            BrokenAnatomy,
        ),
        (
            "My avatar has six fingers and deformed eyes.",
            BrokenAnatomy,
        ),
        (
            "Das Gesicht ist total verzerrt und die Hand hat sechs Finger.",
            BrokenAnatomy,
        ),
        (
            "Le visage est déformé, il y a des doigts en trop.",
            BrokenAnatomy,
        ),
        (
            "La cara está deformada y tiene dedos de más.",
            BrokenAnatomy,
        ),
        // content_violation
        (
            "The result shows me naked, this is not okay.",
            ContentViolation,
        ),
        (
            "It generated a sexualized image of my teenager, very inappropriate.",
            ContentViolation,
        ),
        (
            "Das Ergebnis ist anzüglich und zeigt mich nackt.",
            ContentViolation,
        ),
        ("L'image est sexuelle et inappropriée.", ContentViolation),
        ("La imagen es sexual e inapropiada.", ContentViolation),
        // moderation_block
        (
            "My photos were rejected by the moderation filter, why?",
            ModerationBlock,
        ),
        (
            "I can't upload my selfie, it says it was flagged.",
            ModerationBlock,
        ),
        (
            "Mein Foto wurde von der Moderation blockiert.",
            ModerationBlock,
        ),
        ("Ma photo a été bloquée par la modération.", ModerationBlock),
        ("Mi foto fue rechazada por la moderación.", ModerationBlock),
        // subjective
        (
            "I just don't like it, it's not what I expected.",
            Subjective,
        ),
        ("Honestly disappointed, the result is ugly.", Subjective),
        ("Gefällt mir einfach nicht, bin enttäuscht.", Subjective),
        ("Ça ne me plaît pas, je suis déçue.", Subjective),
        ("No me gusta, estoy decepcionada.", Subjective),
        // other
        ("Hi, how do I change my account email address?", Other),
        ("Thanks!", Other),
        ("", Other),
    ];
    assert_categories(cases);
}

#[test]
fn specific_complaints_beat_generic_refund_wording() {
    use Category::*;
    let cases: &[(&str, Category)] = &[
        (
            "Refund please, the avatar doesn't look like me.",
            NoResemblance,
        ),
        (
            "I want my money back because the generation failed with an error.",
            FailedGeneration,
        ),
        (
            "Ich will eine Rückerstattung, das Gesicht ist verzerrt.",
            BrokenAnatomy,
        ),
        (
            "Remboursez-moi, ce n'est pas le style que j'ai choisi.",
            WrongStyle,
        ),
        (
            "I don't like it because it doesn't look like me.",
            NoResemblance,
        ),
        (
            "My photo was flagged as inappropriate, but there's nothing inappropriate in it.",
            ModerationBlock,
        ),
    ];
    assert_categories(cases);
}

#[test]
fn text_flags_are_raised_and_negations_cancel_them() {
    let chargeback = [Flag::Chargeback];
    let statutory = [Flag::StatutoryRights];
    let none: [Flag; 0] = [];
    let cases: &[(&str, &[Flag])] = &[
        ("Refund me or I will file a chargeback.", &chargeback),
        ("I already disputed the charge with my bank.", &chargeback),
        (
            "Otherwise I'll open a dispute with my credit card company.",
            &chargeback,
        ),
        ("Sonst mache ich eine Rückbuchung.", &chargeback),
        (
            "Ich werde bei meiner Bank Widerspruch einlegen und die Lastschrift zurückgeben.",
            &chargeback,
        ),
        ("Sinon je fais opposition bancaire.", &chargeback),
        (
            "Je vais contester le paiement auprès de ma banque.",
            &chargeback,
        ),
        ("Si no, haré un contracargo.", &chargeback),
        ("Voy a disputar el cargo con mi banco.", &chargeback),
        ("This is not a chargeback, I just want my money.", &none),
        (
            "I won't dispute the charge, I'd rather sort it out with you.",
            &none,
        ),
        ("I don't want to do a chargeback.", &none),
        ("Ich möchte keine Rückbuchung machen.", &none),
        ("Kein Chargeback, keine Sorge.", &none),
        ("Je ne veux pas de rétrofacturation.", &none),
        ("Pas d'opposition bancaire, promis.", &none),
        ("No es un contracargo, solo pido ayuda.", &none),
        ("No quiero hacer un contracargo.", &none),
        (
            "There is a dispute between me and my brother about the style.",
            &none,
        ),
        (
            "Under the EU cooling-off period I want my money back.",
            &statutory,
        ),
        (
            "The Consumer Rights Act 2015 gives me this right.",
            &statutory,
        ),
        ("Consumer protection law says I can cancel.", &statutory),
        ("Ich mache von meinem Widerrufsrecht Gebrauch.", &statutory),
        ("Hiermit widerrufe ich den Vertrag.", &statutory),
        ("J'exerce mon droit de rétractation.", &statutory),
        ("Ejerzo mi derecho de desistimiento.", &statutory),
        (
            "Según la ley de protección al consumidor tengo derecho.",
            &statutory,
        ),
        ("My rights are fine, just refund me.", &none),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(text, expected)| {
            let intent = classify(text);
            let expected: BTreeSet<Flag> = expected.iter().copied().collect();
            (intent.flags != expected).then(|| {
                format!(
                    "{text:?}: got {:?}, expected {expected:?}, scores {:?}",
                    intent.flags, intent.scores
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_negated_refund_does_not_make_a_cash_refund() {
    use Category::*;
    let cases: &[(&str, Category)] = &[
        (
            "I don't want a refund, I want the style fixed: wrong style.",
            WrongStyle,
        ),
        (
            "Ich möchte keine Rückerstattung, nur eine Frage zum Konto.",
            Other,
        ),
        (
            "Je ne veux pas de remboursement, juste une question.",
            Other,
        ),
        ("No quiero un reembolso, solo una pregunta.", Other),
        ("No errors at all, it just looks ugly.", Subjective),
    ];
    assert_categories(cases);
}

#[test]
fn repeating_a_word_does_not_raise_its_score() {
    let once = classify("refund");
    let thrice = classify("refund refund refund, refund!");
    let target = Target::Category(Category::CashRefund);
    assert_eq!(once.scores.get(&target), thrice.scores.get(&target));
    let overlap = classify("please refund my order");
    assert_eq!(
        overlap.scores.get(&target),
        Some(&3),
        "{:?}",
        overlap.scores
    );
}

#[test]
fn every_target_has_rules_in_every_language() {
    let file: RulesFile = toml::from_str(BUILT_IN).unwrap();
    let targets: Vec<&str> = Category::ALL
        .iter()
        .filter(|c| **c != Category::Other)
        .map(|c| c.as_str())
        .chain(TEXT_FLAGS.iter().map(|f| f.as_str()))
        .collect();
    for target in targets {
        for lang in LANGUAGES {
            assert!(
                file.rules
                    .iter()
                    .any(|r| r.target == target && r.lang == *lang),
                "no {lang} rules for {target}"
            );
        }
    }
}

#[test]
fn bad_rules_files_are_refused_naming_the_file_and_the_rule() {
    let priority = r#"category_priority = ["content_violation", "moderation_block", "failed_generation", "broken_anatomy", "no_resemblance", "wrong_style", "cash_refund", "subjective"]"#;
    let cases: Vec<(String, &str)> = vec![
        ("not toml [".into(), "ops.toml"),
        (
            format!(
                "{priority}\n[[rules]]\ntarget = \"refnd\"\nlang = \"en\"\nweight = 1\npatterns = [\"x\"]"
            ),
            "unknown target `refnd`",
        ),
        (
            format!(
                "{priority}\n[[rules]]\ntarget = \"cash_refund\"\nlang = \"en\"\nweight = 1\npatterns = [\"(unclosed\"]"
            ),
            "rules #1 (target `cash_refund`, lang `en`): invalid pattern `(unclosed`",
        ),
        (
            format!(
                "{priority}\n[[rules]]\ntarget = \"cash_refund\"\nlang = \"it\"\nweight = 1\npatterns = [\"x\"]"
            ),
            "lang must be one of",
        ),
        (
            format!(
                "{priority}\n[[rules]]\ntarget = \"cash_refund\"\nlang = \"en\"\nweight = 0\npatterns = [\"x\"]"
            ),
            "weight must be at least 1",
        ),
        (
            format!(
                "{priority}\n[[negations]]\ntargets = [\"sender_mismatch\"]\nlang = \"en\"\npatterns = [\"x\"]"
            ),
            "unknown target `sender_mismatch`",
        ),
        (
            "category_priority = [\"cash_refund\"]".into(),
            "missing failed_generation",
        ),
        (format!("{priority}\nunknown_key = 1"), "unknown field"),
    ];
    for (source, needle) in cases {
        let err = IntentRules::from_toml(&source, "ops.toml").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("ops.toml"), "{message}");
        assert!(message.contains(needle), "{needle:?} not in {message}");
        assert!(!err.is_transient());
    }
}

#[test]
fn a_missing_rules_file_is_an_error_naming_the_path() {
    let err = IntentRules::from_file(Path::new("/nonexistent/rules.toml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/rules.toml"), "{err}");
}

#[test]
fn a_minimal_rules_file_is_enough() {
    let source = r#"
category_priority = ["content_violation", "moderation_block", "failed_generation", "broken_anatomy", "no_resemblance", "wrong_style", "cash_refund", "subjective"]
[min_score]
cash_refund = 1
[[rules]]
target = "cash_refund"
lang = "en"
weight = 1
patterns = ["payback"]
"#;
    let rules = IntentRules::from_toml(source, "mini.toml").unwrap();
    assert_eq!(
        rules.classify("payback time").category,
        Category::CashRefund
    );
    assert_eq!(rules.classify("refund").category, Category::Other);
}
