// The web chat: POST /api/chat and render its Server-Sent Events (docs/CHAT.md).
// Plain DOM, no libraries; every string from the server goes in as text, never HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const turns = []; // {role, content} of this conversation
const conversationId = 'web-' + Math.random().toString(36).slice(2, 12);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function cardElement(c) {
  const d = el('div', 'card' + (c.stale ? ' stale' : ''));
  d.dataset.productId = c.product_id;
  d.appendChild(el('div', 'title', c.title));
  if (c.brand) d.appendChild(el('div', 'brand', c.brand));
  const price = el('div', 'price', c.price !== null ? c.price + ' ' + c.currency : 'no offer');
  price.dataset.priceMinor = c.price_minor !== undefined ? c.price_minor : '';
  d.appendChild(price);
  if (c.price !== null) {
    d.appendChild(el('div', 'meta stock', c.in_stock ? 'In stock: ' + c.stock : 'Out of stock'));
    d.appendChild(el('div', 'meta', 'Sold by ' + c.seller +
      (c.delivery_days !== null ? ' · delivers in ' + c.delivery_days + ' business days' : '')));
  }
  if (c.delivery) {
    d.appendChild(el('div', 'meta', c.delivery.available
      ? 'To your postcode: ' + c.delivery.earliest + ' – ' + c.delivery.latest
      : 'Not deliverable now'));
  }
  const asof = el('div', 'asof', 'as of ' + (c.as_of || 'unknown'));
  if (c.stale) asof.appendChild(el('span', 'stale-mark', ' · stale (last known)'));
  d.appendChild(asof);
  return d;
}

function addMessage(role) {
  const m = el('div', 'msg ' + role);
  const t = el('span', 'text');
  m.appendChild(t);
  $('log').appendChild(m);
  $('log').scrollTop = $('log').scrollHeight;
  return { m, t, cards: null, notes: null, noted: new Set() };
}

// 👍/👎 under an answer: disabled until its done event names the stored answer;
// the recorded vote is highlighted once the server said ok (POST /api/feedback).
function voteBar(view) {
  const bar = el('div', 'vote');
  const up = el('button', 'vote-up', '👍'), down = el('button', 'vote-down', '👎');
  const note = el('span', 'vote-note');
  const box = el('div', 'vote-comment');
  const comment = el('input');
  comment.maxLength = 1000;
  comment.placeholder = 'What was wrong? (optional)';
  const sendComment = el('button', 'vote-send', 'Send');
  box.append(comment, sendComment);
  box.hidden = true;
  for (const [b, label] of [[up, 'good answer'], [down, 'bad answer']]) {
    b.type = 'button';
    b.title = label;
    b.setAttribute('aria-label', label);
    b.disabled = true;
  }
  sendComment.type = 'button';
  async function vote(rating, text) {
    const body = { answer_id: bar.dataset.answerId, rating };
    if (text) body.comment = text;
    note.textContent = '…';
    try {
      const r = await fetch('/api/feedback', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                               body: JSON.stringify(body) });
      const j = await r.json().catch(() => null);
      if (!r.ok || !j || !j.ok) throw new Error(j && j.error ? j.error.message : 'HTTP ' + r.status);
      up.classList.toggle('chosen', rating === 'up');
      down.classList.toggle('chosen', rating === 'down');
      bar.dataset.vote = rating;
      note.textContent = rating === 'up' ? 'Thanks!' : (text ? 'Thanks for telling us.' : 'Thanks. Tell us more?');
    } catch (e) {
      note.textContent = 'Vote not saved: ' + e.message;
    }
  }
  up.addEventListener('click', () => { box.hidden = true; vote('up'); });
  down.addEventListener('click', () => { box.hidden = false; vote('down'); });
  sendComment.addEventListener('click', () => { vote('down', comment.value.trim()); box.hidden = true; });
  bar.append(up, down, note, box);
  view.m.appendChild(bar);
  return bar;
}

function section(view, key, tag, cls) {
  if (!view[key]) { view[key] = el(tag, cls); view.m.appendChild(view[key]); }
  return view[key];
}

function handle(view, name, data, answer) {
  if (name === 'text') {
    view.t.appendChild(document.createTextNode(data.text));
    answer.text += data.text;
  } else if (name === 'citation') {
    const s = el('sup', 'cite', '[' + data.n + ']');
    s.title = data.snippet;
    view.t.appendChild(s);
    answer.text += '[' + data.n + ']';
    if (!view.noted.has(data.n)) {
      view.noted.add(data.n);
      const li = el('li', null, '[' + data.n + '] (' + data.source + (data.product_id ? ', ' + data.product_id : '') +
        (data.as_of ? ', as of ' + data.as_of : '') + ') ' + data.snippet);
      section(view, 'notes', 'ul', 'notes').appendChild(li);
    }
  } else if (name === 'card') {
    section(view, 'cards', 'div', 'cards').appendChild(cardElement(data));
  } else if (name === 'compare') {
    const box = el('div', 'cards compare');
    for (const c of data.products) box.appendChild(cardElement(c));
    view.m.appendChild(box);
  } else if (name === 'suggestions') {
    const s = $('suggestions');
    s.textContent = '';
    for (const x of data.suggestions) {
      const b = el('button', null, x.text);
      b.type = 'button';
      b.addEventListener('click', () => ask(x.text));
      s.appendChild(b);
    }
  } else if (name === 'done') {
    const u = data.usage, t = data.timings;
    view.m.appendChild(el('div', 'done', u.prompt_tokens + ' prompt tokens (' + u.cached_tokens + ' cached), ' +
      u.completion_tokens + ' answer tokens · retrieval ' + t.retrieval_ms.toFixed(0) + ' ms · first token ' +
      t.ttft_ms.toFixed(0) + ' ms' + (data.dropped_tags ? ' · ' + data.dropped_tags + ' unknown product tags dropped' : '')));
    if (data.answer_id && view.vote) {
      view.vote.dataset.answerId = data.answer_id;
      for (const b of view.vote.querySelectorAll('.vote-up, .vote-down')) b.disabled = false;
      view.m.appendChild(view.vote); // below the answer's footer
    } else if (view.vote) {
      view.vote.remove(); // answers are not stored here (--no-store-answers): nothing to vote on
    }
    view.m.classList.add('complete');
  } else if (name === 'error') {
    view.m.appendChild(el('div', 'err', data.error ? data.error.message : 'error'));
  }
  $('log').scrollTop = $('log').scrollHeight;
}

async function ask(question) {
  question = question.trim();
  if (!question) return;
  $('send').disabled = true;
  $('suggestions').textContent = '';
  addMessage('user').t.textContent = question;
  turns.push({ role: 'user', content: question });
  const view = addMessage('assistant');
  view.vote = voteBar(view);
  const answer = { text: '' };
  const body = { messages: turns, conversation_id: conversationId };
  if ($('product').value) body.product_id = $('product').value;
  if ($('postcode').value.trim()) body.postcode = $('postcode').value.trim();
  try {
    const r = await fetch('/api/chat', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                         body: JSON.stringify(body) });
    if (!r.ok) {
      const e = await r.json().catch(() => null);
      handle(view, 'error', e || { error: { message: 'HTTP ' + r.status } }, answer);
      turns.pop();
      return;
    }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let name = 'message', data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) name = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data) handle(view, name, JSON.parse(data), answer);
      }
    }
    turns.push({ role: 'assistant', content: answer.text.trim() || '(no answer)' });
  } catch (e) {
    handle(view, 'error', { error: { message: String(e) } }, answer);
  } finally {
    $('send').disabled = false;
  }
}

$('ask').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const q = $('q').value;
  $('q').value = '';
  ask(q);
});

fetch('/api/products').then((r) => r.json()).then((list) => {
  for (const p of list) {
    const o = el('option', null, p.title.length > 70 ? p.title.slice(0, 69) + '…' : p.title);
    o.value = p.id;
    $('product').appendChild(o);
  }
  const want = new URLSearchParams(location.search).get('product');
  if (want) $('product').value = want;
});
