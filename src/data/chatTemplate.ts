import { Template } from '@huggingface/jinja';
import { describeError, UserError } from '../util/errors.js';
import { readTextFile } from '../util/jsonl.js';
import { findModelFile, readTokenizerConfig, type TokenizerConfig } from './modelFiles.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface RenderOptions {
  /** Append the header of an assistant turn for the model to complete; default false. */
  addGenerationPrompt?: boolean;
}

/**
 * The model's own Jinja chat template, rendered as HF transformers'
 * `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` does: same
 * template (chat_template.jinja, else tokenizer_config.json's `chat_template`), same
 * trim_blocks/lstrip_blocks whitespace rules (built into @huggingface/jinja), same variables.
 */
export class ChatTemplate {
  private constructor(
    /** The template text. */
    readonly source: string,
    /** File it came from, for messages. */
    readonly origin: string,
    private readonly template: Template,
    private readonly specialTokens: Record<string, unknown>,
  ) {}

  static fromModelDir(dir: string): ChatTemplate {
    const config = readTokenizerConfig(dir);
    const jinjaPath = findModelFile(dir, 'chatTemplate');
    // transformers lets a separate chat_template.jinja override tokenizer_config.json.
    if (jinjaPath !== undefined)
      return ChatTemplate.fromSource(readTextFile(jinjaPath, 'chat template'), jinjaPath, config);
    if (config?.chatTemplate === undefined || config.chatTemplate === null) {
      throw new UserError(
        `no chat template in model folder ${dir}: neither chat_template.jinja nor a "chat_template" in tokenizer_config.json (base models have none; use the chat/instruct model's folder)`,
      );
    }
    return ChatTemplate.fromSource(pickTemplate(config.chatTemplate, config.path), config.path, config);
  }

  /** `config` supplies the special-token variables (bos_token, eos_token, ...). */
  static fromSource(source: string, origin: string, config?: TokenizerConfig): ChatTemplate {
    let template: Template;
    try {
      template = new Template(source);
    } catch (err) {
      throw new UserError(`cannot parse the chat template in ${origin}: ${describeError(err)}`);
    }
    // transformers passes the tokenizer's special_tokens_map, which lists only the tokens that are set.
    const specialTokens: Record<string, unknown> = {};
    const named = {
      bos_token: config?.bosToken,
      eos_token: config?.eosToken,
      unk_token: config?.unkToken,
      pad_token: config?.padToken,
    };
    for (const [key, value] of Object.entries(named)) if (value !== undefined) specialTokens[key] = value;
    if (config !== undefined && config.additionalSpecialTokens.length > 0) {
      specialTokens.additional_special_tokens = config.additionalSpecialTokens;
    }
    return new ChatTemplate(source, origin, template, specialTokens);
  }

  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    try {
      return this.template.render({
        ...this.specialTokens,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: opts.addGenerationPrompt === true,
        tools: null,
        documents: null,
      });
    } catch (err) {
      throw new UserError(`the chat template in ${this.origin} failed: ${describeError(err)}`);
    }
  }
}

/** `chat_template` is a string, or a list of {name, template} where "default" is the chat one. */
function pickTemplate(value: unknown, path: string): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value as { name?: unknown; template?: unknown }[];
    const chosen = named.find((t) => t?.name === 'default');
    if (typeof chosen?.template === 'string') return chosen.template;
    const names = named.map((t) => JSON.stringify(t?.name)).join(', ');
    throw new UserError(
      `${path}: "chat_template" lists templates ${names} but none named "default" with a template string`,
    );
  }
  throw new UserError(`${path}: "chat_template" must be a string or a list of {"name", "template"}`);
}
