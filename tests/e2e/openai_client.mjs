// openai_client.mjs — drive `aisle serve` with OpenAI's official Node client.
//
// usage: node tests/e2e/openai_client.mjs BASE_URL MODEL
//   BASE_URL like http://127.0.0.1:8080/v1
//
// Checks, each printing "ok NAME" (any failure throws and exits 1):
//   models       models.list() names MODEL
//   chat         a non-streaming chat answer: text, finish_reason, usage sums
//   chat-stream  the same request streamed (temperature 0) gives the same text,
//                chunk by chunk, with usage in the last chunk
//   completion   /v1/completions both ways agree
//   errors       an unknown model is a NotFoundError (404) and too many tokens a
//                BadRequestError (400) with OpenAI's error fields
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const [baseURL, model] = process.argv.slice(2);
if (!baseURL || !model) {
  console.error('usage: node openai_client.mjs BASE_URL MODEL');
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: 'not-needed', maxRetries: 0, timeout: 60000 });

const messages = [
  { role: 'system', content: 'You answer questions about products.' },
  { role: 'user', content: 'Does the tent fit two people? Ünïcödé ✓' },
];

async function main() {
  const models = await client.models.list();
  assert.ok(models.data.some((m) => m.id === model), `models: ${JSON.stringify(models.data)}`);
  console.log('ok models');

  const whole = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0, seed: 3 });
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices.length, 1);
  const text = whole.choices[0].message.content;
  assert.equal(typeof text, 'string');
  assert.equal(whole.choices[0].message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(whole.choices[0].finish_reason));
  const u = whole.usage;
  assert.ok(u.prompt_tokens > 10 && u.completion_tokens > 0 && u.completion_tokens <= 24, JSON.stringify(u));
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  console.log('ok chat');

  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 24, temperature: 0, seed: 3, stream: true,
    stream_options: { include_usage: true },
  });
  let streamed = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta?.content) streamed += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
    chunks++;
  }
  assert.equal(streamed, text);
  assert.ok(chunks >= 3, `only ${chunks} chunks`);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(usage, u);
  console.log('ok chat-stream');

  const c1 = await client.completions.create({ model, prompt: 'Rain jacket review:', max_tokens: 10, temperature: 0 });
  assert.equal(c1.object, 'text_completion');
  let c2 = '';
  for await (const ch of await client.completions.create({
    model, prompt: 'Rain jacket review:', max_tokens: 10, temperature: 0, stream: true,
  })) {
    c2 += ch.choices[0]?.text ?? '';
  }
  assert.equal(c2, c1.choices[0].text);
  console.log('ok completion');

  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found' &&
      /no-such-model/.test(e.message) && e.param === 'model',
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages, max_tokens: 1000000 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.code === 'context_length_exceeded' &&
      e.type === 'invalid_request_error',
  );
  console.log('ok errors');
}

main().then(
  () => console.log('all ok'),
  (e) => {
    console.error('FAILED:', e);
    process.exit(1);
  },
);
