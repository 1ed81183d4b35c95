"""The data dictionary: every exported column, with its type, meaning and units.

This is the export's contract, written apart from the code that produces the rows (`registry.py`): an exporter
names the columns it yields, in order, and takes their types from here, so a column that is not documented
cannot be exported (a KeyError), and the tests check that each table's columns are exactly the documented ones.
The same definitions become `data_dictionary.md` and `data_dictionary.json` in every export, and the Parquet
schema (the Arrow type of every column is declared here, never inferred from the data).

Types (`type`), and how each format writes them:

| type | Parquet (Arrow) | CSV | JSONL |
|---|---|---|---|
| int64, float64 | int64, float64 | the number | a number |
| bool | bool | `true` / `false` | true / false |
| string | string | the text | a string |
| timestamp | timestamp[us, tz=UTC] | ISO 8601 UTC, `2026-03-01T09:00:00.000000Z` | the same ISO string |
| list<…> | list<…> | JSON text (`[1,2]`) | an array |
| json | string (JSON text) | JSON text | the JSON value itself |

Null is an empty CSV cell, a JSON `null` and a Parquet null. String columns are never null (an absent value is
the empty string), so an empty CSV cell in a string column is the empty string.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = "oversight.export/1"
DICTIONARY_SCHEMA = "oversight.export-dictionary/1"

TYPES = ("int64", "float64", "bool", "string", "timestamp", "list<string>", "list<float64>", "list<int64>", "json")

# The Arrow type of each dictionary type, as written in data_dictionary.json (and checked against the files).
ARROW_TYPES = {
    "int64": "int64",
    "float64": "double",
    "bool": "bool",
    "string": "string",
    "timestamp": "timestamp[us, tz=UTC]",
    "list<string>": "list<element: string>",
    "list<float64>": "list<element: double>",
    "list<int64>": "list<element: int64>",
    "json": "string",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    meaning: str
    units: str = ""
    nullable: bool = True
    # Written only when the researcher asks for external ids and the study allows their export.
    external_id: bool = False

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: unknown type {self.type!r}")
        if self.type == "string" and self.nullable:
            object.__setattr__(self, "nullable", False)  # string columns use "" for absent values


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    row: str  # what one row is
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name}.{name} is not in the data dictionary")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def C(name, type, meaning, units="", nullable=True, external_id=False) -> Column:
    return Column(name, type, meaning, units, nullable, external_id)


PID = C(
    "participant_id",
    "string",
    "Pseudonymous participant id, `P` and a number (the platform's internal row "
    "number). It links a participant's rows across tables and is linked to no recruitment id in the export.",
    nullable=False,
)
SECONDS = "seconds"
PERCENT = "percent (0–100)"
INDEX = "0-based option index (0 = A)"

TABLES: tuple[Table, ...] = (
    Table(
        "participants",
        "Everyone who opened the study's join link (pilots only when the export includes them). Tokens, "
        "recruitment parameters and completion codes are never exported.",
        "one participant",
        (
            PID,
            C(
                "kind",
                "string",
                "human (a person) or model (a model judge made by a judge run, issue 17: its record is in "
                "model). Reports keep the two apart; never pool them without saying so.",
                nullable=False,
            ),
            C(
                "model",
                "json",
                "A model judge's record: endpoint (id, name, kind), model id, sampling, answer method "
                "(logprobs, verbal or simulated), judge run id and mode (replay or live); {} for people.",
                nullable=False,
            ),
            C(
                "status",
                "string",
                "Where the participant got to: consent (has not answered the consent form), "
                "declined, active (in progress or abandoned mid-way), completed, screened_out (failed the attention "
                "checks, or every allowed attempt at the comprehension check: see the screened_out event's reason), "
                "returned.",
                nullable=False,
            ),
            C(
                "is_pilot",
                "bool",
                "A pilot (test) participant. Pilots are never analysed and are exported only with --include-pilots.",
                nullable=False,
            ),
            C(
                "excluded",
                "bool",
                "Has an active (unrevoked) exclusion: left out of the primary analysis. See the "
                "exclusions table for who decided it and why.",
                nullable=False,
            ),
            C(
                "recruitment_source",
                "string",
                "How they arrived: prolific, mturk, pid (another panel's id) or empty for an anonymous join.",
                nullable=False,
            ),
            C(
                "condition_order",
                "list<int64>",
                "The condition ids this participant does, in the order done (conditions.condition_id).",
                nullable=False,
            ),
            C(
                "order_seed",
                "int64",
                "The seed of this participant's item order and attention-check positions.",
                nullable=False,
            ),
            C("joined_at", "timestamp", "When they first opened the join link.", "UTC", nullable=False),
            C("consented_at", "timestamp", "When they consented; null if they have not.", "UTC"),
            C("completed_at", "timestamp", "When they finished (completed or screened out); null otherwise.", "UTC"),
            C("last_seen_at", "timestamp", "The last time the server heard from their page, if recorded.", "UTC"),
            C(
                "external_id",
                "string",
                "The recruitment platform's id, `<source>:<id>` (e.g. `prolific:5f…`). "
                "Identifying: present only when the export was asked for external ids AND the study allows their "
                "export.",
                nullable=False,
                external_id=True,
            ),
        ),
    ),
    Table(
        "conditions",
        "The study's conditions (unaided, assisted by a model, or a protocol: consultancy, debate, …).",
        "one condition",
        (
            C("condition_id", "int64", "Condition id (trials.condition_id).", nullable=False),
            C("name", "string", "The researcher's name for the condition.", nullable=False),
            C(
                "kind",
                "string",
                "unaided, assisted, consultancy, debate, open_consultancy, open_debate, interactive_debate or "
                "evidence_only (docs/protocols.md).",
                nullable=False,
            ),
            C("position", "int64", "Order in the study's design (fixed order: the order done).", nullable=False),
            C(
                "endpoint",
                "string",
                "Name of the model endpoint an assisted condition talks to; empty if none.",
                nullable=False,
            ),
            C(
                "model_label",
                "string",
                "The model id the endpoint reports or was configured with; empty if none.",
                nullable=False,
            ),
            C("inject_passage", "bool", "Whether a QuALITY passage opens the model's context.", nullable=False),
            C("send_question", "bool", "Whether the question and options are sent to the model.", nullable=False),
            C("max_turns", "int64", "Most participant messages per item.", "messages", nullable=False),
            C("max_message_chars", "int64", "Longest participant message allowed.", "characters", nullable=False),
            C(
                "protocol",
                "json",
                "A protocol's settings, every default filled in as the manifest freezes them (rounds, word_limit, "
                "quote_budget, transcripts, …); {} for unaided and assisted conditions.",
                nullable=False,
            ),
        ),
    ),
    Table(
        "tasks",
        "The study's tasks: a bank, how many items are drawn from it, and its role.",
        "one task",
        (
            C("task_id", "int64", "Task id.", nullable=False),
            C("name", "string", "Task name (trials.task).", nullable=False),
            C(
                "role",
                "string",
                "scored (sampled per condition), practice (shown first, unscored) or catch "
                "(attention checks that decide screen-outs).",
                nullable=False,
            ),
            C("position", "int64", "Order of the task in the study's design.", nullable=False),
            C("bank", "string", "Name of the question bank the items come from.", nullable=False),
            C(
                "sample_size",
                "int64",
                "Items per condition (scored) or in total (practice, catch).",
                "items",
                nullable=False,
            ),
            C("time_limit_s", "int64", "Time limit per item; null for none.", SECONDS),
            C("difficult_only", "bool", "Only QuALITY's hard subset was sampled.", nullable=False),
        ),
    ),
    Table(
        "items",
        "Every item of the study (scored, practice and catch), with the right answer.",
        "one item",
        (
            C("item_id", "int64", "Item id (trials.item_id, baselines.item_id).", nullable=False),
            C("bank", "string", "Name of the question bank.", nullable=False),
            C("external_id", "string", "The item's id in its source dataset.", nullable=False),
            C("subject", "string", "MMLU subject (or the bank's topic label); empty if none.", nullable=False),
            C("split", "string", "The source dataset's split (test, validation, dev…).", nullable=False),
            C("text", "string", "The question as shown.", nullable=False),
            C("options", "list<string>", "The answer options, in the order shown (A, B, …).", nullable=False),
            C("n_options", "int64", "Number of options.", "options", nullable=False),
            C("gold_index", "int64", "The right option; null where the source has no label.", INDEX),
            C("difficult", "bool", "QuALITY's `difficult` flag (hard subset); null where the source has none."),
            C("passage_id", "int64", "The passage the question is about (passages.passage_id); null for MMLU."),
            C(
                "content_hash",
                "string",
                "SHA-256 of the item's content as imported (to match the manifest).",
                nullable=False,
            ),
        ),
    ),
    Table(
        "passages",
        "The reading passages (QuALITY articles) of the study's items.",
        "one passage",
        (
            C("passage_id", "int64", "Passage id (items.passage_id).", nullable=False),
            C("bank", "string", "Name of the question bank.", nullable=False),
            C("external_id", "string", "The passage's id in its source dataset.", nullable=False),
            C("title", "string", "Title.", nullable=False),
            C("author", "string", "Author.", nullable=False),
            C("text", "string", "The full text.", nullable=False),
            C("content_hash", "string", "SHA-256 of the passage's content as imported.", nullable=False),
        ),
    ),
    Table(
        "trials",
        "Every trial (one participant × one item) of every exported participant: all roles and statuses.",
        "one participant × one item",
        (
            C("trial_id", "int64", "Trial id (messages.trial_id, events.trial_id).", nullable=False),
            PID,
            C(
                "participant_kind",
                "string",
                "human or model (participants.kind): a model judge's answers are trials too; analyse them apart.",
                nullable=False,
            ),
            C(
                "condition_id",
                "int64",
                "The condition the item was shown in (conditions.condition_id).",
                nullable=False,
            ),
            C("condition_kind", "string", "unaided or assisted.", nullable=False),
            C("condition_name", "string", "The condition's name.", nullable=False),
            C("task", "string", "The task the item was drawn for (tasks.name); empty if unknown.", nullable=False),
            C("item_id", "int64", "The item (items.item_id).", nullable=False),
            C("role", "string", "scored, practice or catch. Only scored trials are analysed.", nullable=False),
            C("position", "int64", "0-based position in the participant's whole sequence.", nullable=False),
            C("time_limit_s", "int64", "The item's time limit; null for none.", SECONDS),
            C("status", "string", "pending (not shown yet), shown (in progress), answered, timed_out.", nullable=False),
            C("shown_at", "timestamp", "When the item was first shown (the clock starts).", "UTC"),
            C("deadline_at", "timestamp", "When the time limit ran out; null without a limit.", "UTC"),
            C(
                "submitted_at",
                "timestamp",
                "When the answer was recorded (by the participant or at the deadline).",
                "UTC",
            ),
            C(
                "submit_kind",
                "string",
                "manual (submitted), auto (the page submitted at the deadline), server "
                "(finalised by the server at the deadline), model (a model judge's answer); empty while not final.",
                nullable=False,
            ),
            C("seconds_used", "float64", "submitted_at − shown_at; null unless both are set.", SECONDS),
            C("selected_choice", "int64", "The last option the server saw selected before the answer.", INDEX),
            C("selected_confidence", "float64", "The last confidence the server saw set before the answer.", PERCENT),
            C("choice", "int64", "The recorded answer; null if none was selected.", INDEX),
            C(
                "confidence",
                "float64",
                "The recorded confidence: the Likert level (25/42/60/80/100), the slider "
                "value (5–95), or for the all-options format the chosen option's share.",
                PERCENT,
            ),
            C(
                "distribution",
                "list<float64>",
                "All-options format only: the probability given to each option.",
                PERCENT,
            ),
            C(
                "correct",
                "bool",
                "choice = the item's gold answer; null for unlabelled items or trials not final. "
                "A timed-out trial with nothing selected is false.",
            ),
            C(
                "transcript_id",
                "int64",
                "A protocol condition's scored trial: the transcript its judge read (transcripts.transcript_id); "
                "null otherwise.",
            ),
        ),
    ),
    Table(
        "messages",
        "Every chat message of the exported participants' trials (assisted conditions): the participant's "
        "messages, the model's replies and context resets.",
        "one chat message",
        (
            C("message_id", "int64", "Message id.", nullable=False),
            C("trial_id", "int64", "The trial the chat belongs to (trials.trial_id).", nullable=False),
            PID,
            C("seq", "int64", "0-based order of the message within its trial.", nullable=False),
            C(
                "role",
                "string",
                "user (the participant), assistant (the model) or reset (the model's context was "
                "emptied here; the participant still saw the history).",
                nullable=False,
            ),
            C(
                "status",
                "string",
                "complete, streaming, failed, cancelled, interrupted (the server stopped mid-reply), stopped (the "
                "participant pressed Stop; the text is what they were shown), queued (a participant's message sent "
                "while a reply streamed and never sent to the model: the chat closed first).",
                nullable=False,
            ),
            C(
                "content",
                "string",
                "The text (the participant's message, or the model's reply as shown).",
                nullable=False,
            ),
            C("reply_to_id", "int64", "The participant message a reply answers (messages.message_id)."),
            C(
                "endpoint",
                "string",
                "Name of the model endpoint that produced a reply; empty otherwise.",
                nullable=False,
            ),
            C("model_id", "string", "The model id reported for a reply; empty otherwise.", nullable=False),
            C(
                "sampling",
                "json",
                "Sampling parameters used for a reply (temperature, top_p, max_tokens, seed).",
                nullable=False,
            ),
            C(
                "context",
                "json",
                "What was in the model's context: the message ids and whether the passage was injected.",
                nullable=False,
            ),
            C("prompt_tokens", "int64", "Prompt length of a reply, as counted by the server.", "tokens"),
            C("completion_tokens", "int64", "Length of a reply.", "tokens"),
            C("ttft_ms", "float64", "Time to the reply's first token.", "milliseconds"),
            C("total_ms", "float64", "Time to the reply's last token.", "milliseconds"),
            C(
                "finish_reason",
                "string",
                "Why generation stopped (length, stop, eos_token…); empty if unknown.",
                nullable=False,
            ),
            C(
                "error_kind",
                "string",
                "For a failed reply: timeout, connection, server, …; empty otherwise.",
                nullable=False,
            ),
            C("error", "string", "For a failed reply: the error message; empty otherwise.", nullable=False),
            C(
                "quotes",
                "json",
                "Quotations of the passage in a reply and whether each was verified against it.",
                nullable=False,
            ),
            C(
                "created_at",
                "timestamp",
                "When the message was stored (a reply: when generation started).",
                "UTC",
                nullable=False,
            ),
            C("finished_at", "timestamp", "When a reply finished.", "UTC"),
        ),
    ),
    Table(
        "transcripts",
        "Protocol transcripts (consultancy, debate, …) the exported participants' trials showed, and the study's "
        "shared ones frozen at launch: the two answers in the order shown and who argued for which.",
        "one transcript",
        (
            C("transcript_id", "int64", "Transcript id (trials.transcript_id).", nullable=False),
            C("condition_id", "int64", "The condition (conditions.condition_id).", nullable=False),
            C("item_id", "int64", "The item (items.item_id).", nullable=False),
            C(
                "shared",
                "bool",
                "Written by self-play before launch and read by every judge of the item; false: one judge's own.",
                nullable=False,
            ),
            C("protocol", "string", "The condition's kind when the transcript was made.", nullable=False),
            C(
                "options",
                "list<int64>",
                "The two answers, as the item's option indices, in the order shown (A, B).",
                INDEX,
            ),
            C(
                "argues",
                "list<int64>",
                "Per speaking position (0: Debater A or the consultant): the index into options it argued for; "
                "empty for evidence only.",
            ),
            C(
                "speakers",
                "list<int64>",
                "Per speaking position: the advocate configuration that spoke there (an open debate's protagonist "
                "is 0).",
            ),
            C("chosen_by_model", "bool", "Open protocols: argues is the model's own choice.", nullable=False),
            C("seed", "int64", "The seed of the consultant's assignment draw.", nullable=False),
            C(
                "distractor_rule",
                "string",
                "How the answer beside the gold one was chosen (validation, its tie rule, or the fallback).",
                nullable=False,
            ),
            C("status", "string", "pending, running, complete or failed.", nullable=False),
            C("rounds_done", "int64", "Rounds every advocate finished.", "rounds", nullable=False),
            C("ended_by", "string", "rounds, judge (ended early), deadline; empty if not ended.", nullable=False),
            C("settings_hash", "string", "SHA-256 of the settings and advocates it was made under.", nullable=False),
            C(
                "content_hash",
                "string",
                "Shared transcripts: SHA-256 of their public turns (as in the manifest).",
                nullable=False,
            ),
            C("created_at", "timestamp", "When it was created.", "UTC", nullable=False),
            C("finished_at", "timestamp", "When it ended.", "UTC"),
        ),
    ),
    Table(
        "transcript_turns",
        "Every turn of those transcripts: the advocates' arguments with their model record, the judge's "
        "questions, and open protocols' private choices.",
        "one turn",
        (
            C("turn_id", "int64", "Turn id.", nullable=False),
            C("transcript_id", "int64", "The transcript (transcripts.transcript_id).", nullable=False),
            C("seq", "int64", "Order within the transcript.", nullable=False),
            C(
                "round",
                "int64",
                "1-based round (a judge's question belongs to the round it precedes).",
                "rounds",
                nullable=False,
            ),
            C(
                "role",
                "string",
                "advocate, judge, or choice (an open protocol's private choice of answer).",
                nullable=False,
            ),
            C(
                "position",
                "int64",
                "Speaking position: 0 (Debater A, the consultant) or 1 (Debater B); null for the judge.",
            ),
            C("status", "string", "complete, streaming, failed, cancelled, interrupted.", nullable=False),
            C("content", "string", "What the judge saw: the public part, cut at the word limit.", nullable=False),
            C(
                "private",
                "string",
                "The advocate's scratchpad (or an open protocol's choice reply): shown to nobody.",
                nullable=False,
            ),
            C("raw", "string", "The model's whole output.", nullable=False),
            C("words", "int64", "Words of the public part.", "words", nullable=False),
            C("truncated", "bool", "The public part was cut at the word limit.", nullable=False),
            C("endpoint", "string", "Name of the model endpoint; empty for the judge's turns.", nullable=False),
            C("model_id", "string", "The model id reported; empty for the judge's turns.", nullable=False),
            C("sampling", "json", "Sampling parameters used.", nullable=False),
            C("prompt_hash", "string", "SHA-256 of the exact messages sent to the model.", nullable=False),
            C(
                "context",
                "json",
                "What the advocate saw: the turn ids, whether the story, its assignment.",
                nullable=False,
            ),
            C("prompt_tokens", "int64", "Prompt length, as counted by the server.", "tokens"),
            C("completion_tokens", "int64", "Length of the output.", "tokens"),
            C("ttft_ms", "float64", "Time to the first token.", "milliseconds"),
            C("total_ms", "float64", "Time to the last token.", "milliseconds"),
            C("finish_reason", "string", "Why generation stopped; empty if unknown.", nullable=False),
            C(
                "error_kind",
                "string",
                "For a failed turn: timeout, unavailable, bad_choice, …; empty otherwise.",
                nullable=False,
            ),
            C("error", "string", "For a failed turn: the error message; empty otherwise.", nullable=False),
            C(
                "quotes",
                "json",
                "Quotes marked in the public part: form (tag, span, plain), text, verified, over_budget, words, "
                "start/end in the story.",
                nullable=False,
            ),
            C("created_at", "timestamp", "When the turn was stored (before generation).", "UTC", nullable=False),
            C("finished_at", "timestamp", "When it was finalised.", "UTC"),
        ),
    ),
    Table(
        "events",
        "The server's log of what each exported participant did, with the server's clock. Recruitment "
        "parameters are removed from `joined` events unless external ids are exported.",
        "one event",
        (
            C("event_id", "int64", "Event id.", nullable=False),
            PID,
            C("trial_id", "int64", "The trial it concerns; null for participant-level events."),
            C(
                "kind",
                "string",
                "joined, resumed, consented, declined, item_shown, selection_changed, "
                "confidence_changed, submitted, timed_out, late_post (an answer that arrived after the deadline, "
                "kept as posted; the recorded answer is unchanged), answer_refused (a submission refused for what "
                "it lacked, e.g. an untouched slider), page_hidden, page_visible, reconnect, completed, screened_out "
                "(data.reason `comprehension` when the comprehension check ended it), chat_sent, chat_reset, "
                "instructions_read, comprehension_attempt (data: attempt, answers, wrong, passed), block_started "
                "(data: block, condition_id).",
                nullable=False,
            ),
            C("at", "timestamp", "When the server recorded it.", "UTC", nullable=False),
            C(
                "data",
                "json",
                "Details of the event (e.g. the choice and confidence of a submission, the seconds "
                "past the deadline of a timeout as `lag_s`).",
                nullable=False,
            ),
        ),
    ),
    Table(
        "exclusions",
        "Researchers' decisions to leave a participant out of analysis, including revoked ones (never deleted). "
        "Exclusions are not applied to the other tables: every exported participant's data is there.",
        "one exclusion decision",
        (
            C("exclusion_id", "int64", "Exclusion id.", nullable=False),
            PID,
            C("rule", "string", "manual, catch, outlier, too_fast or incomplete.", nullable=False),
            C("reason", "string", "The researcher's stated reason.", nullable=False),
            C("created_at", "timestamp", "When it was decided.", "UTC", nullable=False),
            C("revoked_at", "timestamp", "When it was revoked; null while active.", "UTC"),
            C("active", "bool", "Not revoked: the participant is left out of the primary analysis.", nullable=False),
        ),
    ),
    Table(
        "baseline_runs",
        "Model-alone baseline runs over the study's items: runs made for this study, and runs over one of its "
        "banks that belong to no study.",
        "one baseline run",
        (
            C("run_id", "int64", "Run id (baselines.run_id).", nullable=False),
            C("scope", "string", "study (the study's scored items) or bank (a whole bank or split).", nullable=False),
            C("bank", "string", "The bank of a bank-scoped run; empty otherwise.", nullable=False),
            C("split", "string", "The split of a bank-scoped run; empty for all.", nullable=False),
            C("method", "string", "zero-shot, few-shot or cot (chain of thought, best of N).", nullable=False),
            C("endpoint", "string", "Name of the model endpoint.", nullable=False),
            C("model_label", "string", "The endpoint's model id.", nullable=False),
            C("params", "json", "The parameters actually used (shots k, samples n, temperature, …).", nullable=False),
            C("template", "string", "Name of the prompt template.", nullable=False),
            C("template_hash", "string", "SHA-256 of the template's content when the run was made.", nullable=False),
            C("status", "string", "queued, running, done, failed or cancelled.", nullable=False),
            C("total", "int64", "Items in the run.", "items", nullable=False),
            C("done", "int64", "Items with a result.", "items", nullable=False),
            C("errors", "int64", "Items whose request failed.", "items", nullable=False),
            C(
                "summary",
                "json",
                "Written when the run finished: accuracy, calibration error, errors by kind, "
                "accuracy per subject (null before).",
            ),
            C("created_at", "timestamp", "When the run was created.", "UTC", nullable=False),
            C("started_at", "timestamp", "When it started.", "UTC"),
            C("finished_at", "timestamp", "When it finished.", "UTC"),
        ),
    ),
    Table(
        "baselines",
        "The model-alone answers of those runs to the study's items.",
        "one run × one item",
        (
            C("result_id", "int64", "Result id.", nullable=False),
            C("run_id", "int64", "The run (baseline_runs.run_id).", nullable=False),
            C("method", "string", "zero-shot, few-shot or cot.", nullable=False),
            C("endpoint", "string", "Name of the model endpoint.", nullable=False),
            C("item_id", "int64", "The item (items.item_id).", nullable=False),
            C("predicted", "int64", "The option the model gave the highest probability; null on error.", INDEX),
            C("correct", "bool", "predicted = gold; null on error or for unlabelled items."),
            C(
                "probabilities",
                "list<float64>",
                "The model's probability of each option, normalised to sum to 1; null on error.",
                "fraction (0–1)",
            ),
            C("latency_ms", "float64", "Time the request(s) took.", "milliseconds", nullable=False),
            C(
                "error_kind",
                "string",
                "For a failed request: timeout, connection, server, …; empty otherwise.",
                nullable=False,
            ),
            C("error", "string", "For a failed request: the error message; empty otherwise.", nullable=False),
            C(
                "missing_letters",
                "json",
                "Option letters absent from the model's top tokens, and how each was scored instead.",
                nullable=False,
            ),
            C("prompt", "string", "The prompt sent.", nullable=False),
            C("response", "json", "The raw response, token log-probabilities included.", nullable=False),
            C("created_at", "timestamp", "When the result was stored.", "UTC", nullable=False),
        ),
    ),
)

BY_NAME = {t.name: t for t in TABLES}

FILES = {
    "README.md": "What the export is, when it was made, the manifest hash, row counts, and how pilots and "
    "exclusions are handled.",
    "export.json": "The same facts, machine-readable: study, options, formats, row counts, manifest hash.",
    "manifest.json": "The study's manifest, frozen at launch (the full design, the exact items per condition, "
    "prompts and endpoint settings) and its SHA-256 hash.",
    "data_dictionary.md": "This dictionary.",
    "data_dictionary.json": "This dictionary, machine-readable.",
    "<format>/<table>.<ext>": "One file per table and format: csv/…csv, jsonl/…jsonl, parquet/…parquet.",
}

CONVENTIONS = {
    "timestamps": "UTC, microsecond precision; ISO 8601 with a Z in CSV and JSONL.",
    "nulls": "An empty CSV cell, JSON null, Parquet null. String columns are never null: an absent value is the "
    "empty string.",
    "lists_and_json": "Parquet: native lists; `json` columns as JSON text. CSV: JSON text. JSONL: the values "
    "themselves.",
    "csv": "RFC 4180 (comma, double-quote quoting, CRLF line ends), UTF-8 without a byte-order mark, one header line.",
    "jsonl": "UTF-8, one JSON object per line, keys in the dictionary's column order.",
    "parquet": "Zstandard-compressed, one row group per batch of rows; the Arrow type of every column as listed "
    "here; each field's metadata carries its meaning and units.",
    "ids": "Numeric ids are the platform's row ids; participants are `P<number>`. They are stable across tables "
    "of one export (and across exports of the same database).",
}


def table(name: str) -> Table:
    return BY_NAME[name]


def as_json() -> dict:
    return {
        "schema": DICTIONARY_SCHEMA,
        "export_schema": SCHEMA,
        "files": FILES,
        "conventions": CONVENTIONS,
        "tables": {
            t.name: {
                "description": t.description,
                "row": t.row,
                "columns": [
                    {
                        "name": c.name,
                        "type": c.type,
                        "arrow_type": ARROW_TYPES[c.type],
                        "units": c.units,
                        "nullable": c.nullable,
                        "meaning": c.meaning,
                        **({"only_with_external_ids": True} if c.external_id else {}),
                    }
                    for c in t.columns
                ],
            }
            for t in TABLES
        },
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def as_markdown(level: int = 1) -> str:
    """The dictionary as Markdown; `level` is the heading level of its title (docs/export.md embeds it at 2)."""
    h1, h2 = "#" * level, "#" * (level + 1)
    lines = [
        f"{h1} Data dictionary",
        "",
        f"Export schema `{SCHEMA}`. Every column of every table, with its type, units and meaning. The same, "
        "machine-readable, is in `data_dictionary.json`.",
        "",
        f"{h2} Files",
        "",
    ]
    lines += [f"- `{name}`: {text}" for name, text in FILES.items()]
    lines += ["", f"{h2} Conventions", ""]
    lines += [f"- **{name.replace('_', ' ')}**: {text}" for name, text in CONVENTIONS.items()]
    for t in TABLES:
        lines += [
            "",
            f"{h2} `{t.name}`",
            "",
            f"{t.description} One row: {t.row}.",
            "",
            "| column | type | Arrow type | units | null? | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for c in t.columns:
            meaning = c.meaning + (" *(only with external ids)*" if c.external_id else "")
            lines.append(
                f"| `{c.name}` | {c.type} | {ARROW_TYPES[c.type]} | {c.units} | "
                f"{'yes' if c.nullable else 'no'} | {_cell(meaning)} |"
            )
    return "\n".join(lines) + "\n"
