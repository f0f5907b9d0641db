//! `llm chat`: a conversation with a chat model from a GGUF file (chapter 7). The model,
//! its tokenizer, chat template and end-of-turn token come from the file
//! ([`llm_lessons::real_model::load`]); each reply streams to stdout as it is generated, and
//! what it cost goes to stderr. With `--prompt`, one reply; without, a conversation on
//! stdin, one message a line, until its end (Ctrl-D).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use llm_lessons::gpt::generate::Stop;
use llm_lessons::quant::gguf::llama::Precision;
use llm_lessons::real_model::{self, Conversation, Pretrained, Reply};
use llm_lessons::Error;

use crate::gpt::SamplingFlags;
use crate::quant::named;
use crate::CliResult;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// A GGUF file with a chat template (tokenizer.chat_template), of architecture llama
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The system message (default: the template's own, if it has one)
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// One message: print the reply and exit (default: a conversation on stdin, one
    /// message a line, until Ctrl-D)
    #[arg(long, value_name = "TEXT")]
    prompt: Option<String>,
    /// The most tokens of one reply (it ends before at the model's end-of-turn token)
    #[arg(long, default_value_t = 512, value_name = "N")]
    max_new_tokens: usize,
    /// Dequantize the weights to f32 (default: compute in the file's own formats, as
    /// llama.cpp does)
    #[arg(long)]
    exact: bool,
    #[command(flatten)]
    sampling: SamplingFlags,
}

pub fn run(args: ChatArgs) -> CliResult {
    let sampling = args.sampling.sampling()?;
    let precision = if args.exact {
        Precision::Exact
    } else {
        Precision::AsStored
    };
    let t0 = Instant::now();
    let model = real_model::load(&args.model, precision)?;
    // before anything is said: a file without a template is not a chat model
    let mut chat = model
        .conversation(args.system.as_deref())
        .map_err(|e| named(&args.model, e))?;
    let mut turn = |text: &str| reply(&model, &mut chat, text, args.max_new_tokens, &sampling);
    if let Some(prompt) = &args.prompt {
        return turn(prompt);
    }
    let stdin = std::io::stdin();
    // a person at a terminal: say what was loaded and how to end
    let interactive = stdin.is_terminal();
    if interactive {
        let cfg = &model.model.cfg;
        eprintln!(
            "{}: {} parameters, {} layers, context {}, loaded in {:.2} s; one message a \
             line, Ctrl-D ends",
            model.name,
            cfg.n_params(),
            cfg.n_layers,
            cfg.context,
            t0.elapsed().as_secs_f64()
        );
    }
    let mut line = String::new();
    loop {
        if interactive {
            eprint!("> ");
        }
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        let message = line.trim_end_matches(['\n', '\r']);
        if !message.trim().is_empty() {
            turn(message)?;
        }
    }
}

/// One turn: the reply streamed to stdout, then a line on stderr with its counts and
/// speed.
fn reply(
    model: &Pretrained,
    chat: &mut Conversation,
    text: &str,
    max_new: usize,
    sampling: &llm_lessons::gpt::generate::Sampling,
) -> CliResult {
    let mut closed: Option<std::io::Error> = None;
    let result = chat.reply(text, max_new, sampling, |piece| {
        let mut out = std::io::stdout();
        out.write_all(piece.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| {
                closed = Some(e);
                Error::InvalidArgument("stdout is closed".into())
            })
    });
    if let Some(e) = closed {
        // `llm chat | head`: main ends quietly on a broken pipe
        return Err(e.into());
    }
    let r = result?;
    crate::say("")?;
    eprintln!("{}", cost(model, &r));
    Ok(())
}

/// `[37 prompt tokens (0 reused) at 210 tokens/s; 12 new at 71.2 tokens/s; end of turn]`
fn cost(model: &Pretrained, r: &Reply) -> String {
    let new = match r.tokens_per_second() {
        Some(speed) => format!("{} new at {speed:.1} tokens/s", r.ids.len()),
        None => format!("{} new", r.ids.len()),
    };
    let why = match r.stop {
        Stop::EndOfTurn(id) => match model.decode(&[id]) {
            Ok(t) => format!("ended by {t}"),
            Err(_) => format!("ended by token {id}"),
        },
        Stop::MaxNew => "cut at --max-new-tokens".into(),
        Stop::Context => "cut: the context is full".into(),
    };
    format!(
        "[{} prompt tokens ({} reused) at {:.0} tokens/s; {new}; {why}]",
        r.prompt_tokens,
        r.reused_tokens,
        r.prompt_tokens_per_second()
    )
}
