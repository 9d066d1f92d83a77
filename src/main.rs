//! The `refundd` command line: parses arguments, sets up logging, loads the
//! configuration, then hands over to [`app`]. Nothing else lives here.

mod app;
mod demo;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// refundd — the refunds desk: reads the refunds mailbox, applies the
/// refund policy, acts, and answers every customer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without one, the embedded defaults apply.
    #[arg(long, global = true, env = "REFUNDD_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "REFUNDD_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the database migrations and exit.
    Migrate,
    /// Ledger maintenance.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// One pass over a Maildir's new/ and cur/: store, decide, reply; then exit.
    Process {
        /// The Maildir folder (holding new/, cur/, tmp/).
        #[arg(long)]
        maildir: PathBuf,
    },
    /// List cases.
    Cases {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Only cases with this outcome (approved, denied, review, needs_info, answered, ignored).
        #[arg(long)]
        outcome: Option<refundd::domain::Outcome>,
        /// Only cases with this status (review, needs_info, resolved, ignored).
        #[arg(long)]
        status: Option<refundd::store::CaseStatus>,
        /// At most this many cases, newest first.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Show one case: its messages, the decision and its trace, replies and history.
    Case {
        /// Case number (`1042` or `R-1042`).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Payments through Polar ([polar]).
    Payments {
        #[command(subcommand)]
        command: PaymentsCommand,
    },
    /// Polar webhooks ([polar] webhook_secret).
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Run the daemon: watch the mailbox ([imap], or [daemon] maildir), decide, act, reply; until SIGTERM/SIGINT.
    Run,
    /// Connect to the database, IMAP and SMTP as configured and say what is wrong, in plain words.
    CheckConfig,
    /// Serve the reviewers' console alone on [web] listen, until SIGTERM/SIGINT.
    Serve,
    /// The review queue: open cases, earliest deadline first.
    Queue {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this category.
        #[arg(long)]
        category: Option<refundd::domain::Category>,
        /// Only cases with this flag.
        #[arg(long)]
        flag: Option<refundd::domain::Flag>,
        /// Sender, subject or text; an order ID; a case tag.
        #[arg(long)]
        search: Option<String>,
        /// At most this many cases.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Decide a case as a reviewer: approve, deny, ask or note.
    Decide {
        /// Case number (`1042` or `R-1042`).
        case: String,
        /// approve | deny | ask | note
        verb: String,
        /// Cash refund amount (e.g. 7.20); without it, approve takes the proposal.
        #[arg(long)]
        amount: Option<String>,
        /// Wallet credits to grant instead of a cash refund.
        #[arg(long)]
        credits: Option<i64>,
        /// The order to refund (default: the case's).
        #[arg(long)]
        order: Option<String>,
        /// Deny reason id: all_credits_used, window_expired, subjective, terminated, or one of [[review.deny_reasons]].
        #[arg(long)]
        reason: Option<String>,
        /// What to ask for: order_id, result, purchase_address, check_order_id.
        #[arg(long)]
        ask: Option<String>,
        /// A personal paragraph for the reply (or the note's text).
        #[arg(long)]
        note: Option<String>,
        /// The reviewer deciding (their address).
        #[arg(long = "as", env = "REFUNDD_REVIEWER")]
        reviewer: String,
        /// The case version you saw (default: the current one).
        #[arg(long)]
        version: Option<i64>,
    },
    /// Reviewer accounts.
    Reviewer {
        #[command(subcommand)]
        command: ReviewerCommand,
    },
    /// The desk's numbers for a period: volume, auto-decision rate, first-response
    /// percentiles, deadline compliance, money refunded, credits granted, per reviewer.
    Report {
        /// Start of the period: `YYYY-MM-DD` (midnight in [calendar] time_zone) or RFC 3339.
        #[arg(long)]
        since: String,
        /// End of the period, exclusive (default: now); same formats.
        #[arg(long)]
        until: Option<String>,
        /// Print CSV (`section,key,value`).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decide mail again with the configuration in force or a candidate, and say what
    /// would change: stored mail (drift, candidate changes, agreement with reviewers),
    /// or an archive never processed with a ledger file. Writes nothing.
    Replay {
        /// Stored mail received from this time: `YYYY-MM-DD` (midnight in [calendar] time_zone) or RFC 3339.
        #[arg(long)]
        since: Option<String>,
        /// Stored mail received before this time (exclusive); same formats.
        #[arg(long)]
        until: Option<String>,
        /// Only this case's stored mail (`R-12`).
        #[arg(long)]
        case: Option<String>,
        /// A candidate configuration file; its [policy], [extract] (with the intent rules
        /// file) and [sender_auth] decide, everything else stays as in force.
        #[arg(long, value_name = "FILE")]
        candidate: Option<PathBuf>,
        /// An archive never processed: a Maildir, only read (files are not moved);
        /// needs --ledger.
        #[arg(long, value_name = "DIR", requires = "ledger", conflicts_with_all = ["since", "until", "case", "mbox", "imap_folder"])]
        maildir: Option<PathBuf>,
        /// An archive never processed: an mbox file (mboxrd), streamed and only read; the
        /// receipt time is each message's `From ` line date. Needs --ledger.
        #[arg(long, value_name = "FILE", requires = "ledger", conflicts_with_all = ["since", "until", "case", "imap_folder"])]
        mbox: Option<PathBuf>,
        /// An archive never processed: a folder of the [imap] server, read without changing
        /// it (EXAMINE, BODY.PEEK); the receipt time is INTERNALDATE. Needs --ledger.
        #[arg(long, value_name = "NAME", requires = "ledger", conflicts_with_all = ["since", "until", "case"])]
        imap_folder: Option<String>,
        /// The ledger for an archive (JSON Lines, as `ledger import` reads it).
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        /// Print the JSON report instead of the table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print one CSV row per message decided instead of the table.
        #[arg(long)]
        csv: bool,
        /// Also write the report as a self-contained HTML page to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// The reply templates ([reply] templates_dir, [[review.deny_reasons]]).
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
    /// Erase a person on request: their mail, subjects, replies' text and address
    /// (replaced by a pseudonym everywhere) go; decisions, amounts, payments and the
    /// audit log stay. Refused while they have an open case or money in flight.
    Erase {
        /// The person's email address.
        #[arg(long)]
        sender: String,
        /// Say what would be erased; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who carries out the request (recorded in the audit log; default `cli`).
        #[arg(long = "as", env = "REFUNDD_OPERATOR")]
        operator: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the whole pipeline on sample data in a demo folder; needs nothing but this binary.
    Demo {
        /// Where to create the demo (replaced if it exists).
        #[arg(long, default_value = "refundd-demo")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TemplatesCommand {
    /// Render every reply kind and configured deny reason in every language, as text and
    /// HTML, from sample facts; list each broken template with file and line (exit 1 if any).
    Check,
}

#[derive(Debug, Subcommand)]
enum ReviewerCommand {
    /// Add a reviewer; the password is read from standard input when it is not a terminal.
    Add {
        email: String,
        /// Give the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// List reviewers: address, role, disabled or not, created, last sign-in, live API tokens
    /// and their last use.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a reviewer: they cannot sign in any more, and their sessions and API tokens end
    /// at once (their next request is refused).
    Disable { email: String },
    /// Enable a disabled reviewer again; they sign in anew and need new API tokens.
    Enable { email: String },
    /// Issue an API token for a reviewer (printed once; expires after [web] token_ttl_days),
    /// or with --revoke, revoke tokens: those issued with --label, or --all of them.
    Token {
        email: String,
        /// The token's label (default `cli` when issuing); with --revoke, which tokens.
        #[arg(long)]
        label: Option<String>,
        /// Revoke instead of issuing: needs --label or --all.
        #[arg(long)]
        revoke: bool,
        /// With --revoke: every token of the reviewer.
        #[arg(long, requires = "revoke", conflicts_with = "label")]
        all: bool,
    },
    /// List a reviewer's API tokens: label, issued, expires, last used, revoked.
    Tokens {
        email: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PaymentsCommand {
    /// One payment pass (pending cash refunds -> Polar), a dispute poll, then the outbox.
    Run,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Serve POST /webhooks/polar until SIGTERM/SIGINT.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Import a JSON Lines ledger export (upsert by id).
    Import {
        /// The file to import (`-` for standard input).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    refundd::daemon::tune_allocator();
    let cli = Cli::parse();
    // The demo is a first run: its table says what happened, so it logs
    // only what went wrong unless RUST_LOG asks for more.
    let default_filter = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "warn,refundd=info",
    };
    app::init_tracing(cli.log_json, default_filter);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Demo { dir } = &cli.command {
        return demo::run(dir).await;
    }
    let settings = app::load_settings(cli.config.as_deref())?;
    match cli.command {
        Command::Migrate => app::migrate(&settings).await,
        Command::Ledger {
            command: LedgerCommand::Import { file },
        } => app::import_ledger(&settings, &file).await,
        Command::Process { maildir } => app::process_maildir(&settings, &maildir).await,
        Command::Cases {
            json,
            outcome,
            status,
            limit,
        } => app::list_cases(&settings, json, outcome, status, limit).await,
        Command::Case { id, json } => app::show_case(&settings, &id, json).await,
        Command::Payments {
            command: PaymentsCommand::Run,
        } => app::run_payments(&settings).await,
        Command::Webhooks {
            command: WebhooksCommand::Serve { listen },
        } => app::serve_webhooks(&settings, listen).await,
        Command::Run => app::run_daemon(settings).await,
        Command::CheckConfig => app::check_config(&settings).await,
        Command::Templates {
            command: TemplatesCommand::Check,
        } => app::check_templates(&settings),
        Command::Serve => app::serve_console(settings).await,
        Command::Queue {
            json,
            category,
            flag,
            search,
            limit,
        } => {
            let filter = refundd::store::QueueFilter {
                category,
                flag,
                search,
                limit: Some(limit),
                ..Default::default()
            };
            app::show_queue(&settings, json, filter).await
        }
        Command::Decide {
            case,
            verb,
            amount,
            credits,
            order,
            reason,
            ask,
            note,
            reviewer,
            version,
        } => {
            let args = app::DecideArgs {
                case,
                verb,
                amount,
                credits,
                order,
                reason,
                ask,
                note,
                reviewer,
                version,
            };
            app::decide_case(&settings, args).await
        }
        Command::Reviewer {
            command: ReviewerCommand::Add { email, admin },
        } => app::add_reviewer(&settings, &email, admin).await,
        Command::Reviewer {
            command: ReviewerCommand::List { json },
        } => app::list_reviewers(&settings, json).await,
        Command::Reviewer {
            command: ReviewerCommand::Disable { email },
        } => app::disable_reviewer(&settings, &email).await,
        Command::Reviewer {
            command: ReviewerCommand::Enable { email },
        } => app::enable_reviewer(&settings, &email).await,
        Command::Reviewer {
            command:
                ReviewerCommand::Token {
                    email,
                    label,
                    revoke: false,
                    ..
                },
        } => app::reviewer_token(&settings, &email, label.as_deref().unwrap_or("cli")).await,
        Command::Reviewer {
            command:
                ReviewerCommand::Token {
                    email,
                    label,
                    revoke: true,
                    all,
                },
        } => app::revoke_tokens(&settings, &email, label.as_deref(), all).await,
        Command::Reviewer {
            command: ReviewerCommand::Tokens { email, json },
        } => app::list_tokens(&settings, &email, json).await,
        Command::Report {
            since,
            until,
            csv,
            json,
        } => app::report(&settings, &since, until.as_deref(), csv, json).await,
        Command::Replay {
            since,
            until,
            case,
            candidate,
            maildir,
            mbox,
            imap_folder,
            ledger,
            json,
            csv,
            html,
        } => {
            let args = app::ReplayArgs {
                since,
                until,
                case,
                candidate,
                maildir,
                mbox,
                imap_folder,
                ledger,
                json,
                csv,
                html,
            };
            app::replay(&settings, args).await
        }
        Command::Erase {
            sender,
            dry_run,
            operator,
            json,
        } => app::erase(&settings, &sender, operator.as_deref(), dry_run, json).await,
        Command::Demo { .. } => unreachable!("handled above"),
    }
}
