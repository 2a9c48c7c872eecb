// Tripline console: progressive enhancement only. Every page works without it; it adds
// local times, live status (Server-Sent Events) and the wizard's "completed" gate.
'use strict';

(function () {
  const localFormat = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
  });
  const utcFormat = (d) => d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

  // Times arrive in UTC; show them in the viewer's zone (named), UTC on hover.
  function localTimes(root) {
    root.querySelectorAll('time[datetime]').forEach((t) => {
      const d = new Date(t.getAttribute('datetime'));
      if (!isNaN(d)) {
        t.textContent = localFormat.format(d);
        t.title = utcFormat(d);
      }
    });
  }

  function ago(ms) {
    const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 60) return 'just now';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' days ago';
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function badge(status, label) {
    const b = el('span', { class: 'badge status-' + status, 'data-status': status });
    b.append(el('span', { class: 'dot', 'aria-hidden': 'true' }), document.createTextNode(label));
    return b;
  }

  function renderBanner(banner, broken, links) {
    banner.replaceChildren(...broken.map((b) => {
      const row = el('div', { class: 'banner', role: 'alert' });
      const text = el('span');
      text.append(el('strong', {}, 'Data connection “' + b.name + '” is in Error. '), document.createTextNode(b.message));
      row.append(el('span', { class: 'icon', 'aria-hidden': 'true' }, '!'), text);
      if (links) row.append(el('a', { href: '/admin/connections/' + encodeURIComponent(b.id) }, 'View details'));
      return row;
    }));
  }

  function updateRows(rows) {
    const table = document.getElementById('connections');
    rows.forEach((r) => {
      const statusHolder = document.querySelector('[data-connection-status="' + CSS.escape(r.id) + '"]');
      if (statusHolder) {
        const current = statusHolder.querySelector('[data-status]');
        if (current && current.dataset.status !== r.status) {
          // The detail panel's causes and history change with the status: reload it.
          window.location.reload();
          return;
        }
      }
      if (!table) return;
      const tr = table.querySelector('tr[data-connection="' + CSS.escape(r.id) + '"]');
      if (!tr) {
        window.location.reload();
        return;
      }
      const cell = tr.querySelector('[data-field="status"]');
      const old = cell.querySelector('[data-status]');
      if (!old || old.dataset.status !== r.status) {
        cell.replaceChildren(badge(r.status, r.status_label));
        tr.classList.toggle('row-error', r.status === 'error');
        tr.classList.remove('fresh');
        void tr.offsetWidth;
        tr.classList.add('fresh');
      }
      const today = tr.querySelector('[data-field="events-today"]');
      if (today.textContent !== r.events_today) today.textContent = r.events_today;
      const last = tr.querySelector('[data-field="last-event"]');
      if (r.last_event_at !== null) {
        const iso = new Date(r.last_event_at).toISOString();
        const t = last.querySelector('time');
        if (!t || t.getAttribute('datetime') !== iso) {
          const time = el('time', { datetime: iso });
          last.replaceChildren(time, document.createTextNode(' '), el('span', { class: 'muted' }, '(' + ago(r.last_event_at) + ')'));
          localTimes(last);
        }
      }
    });
  }

  // The navigation's count of open alerts ticks; the alert list offers what is new.
  function updateAlerts(pulse) {
    if (!pulse) return;
    const count = document.getElementById('open-alerts');
    if (count) {
      const text = pulse.active.toLocaleString('en-US');
      if (count.textContent.trim() !== text) {
        count.textContent = text;
        count.hidden = pulse.active === 0;
        count.classList.remove('ticked');
        void count.offsetWidth;
        count.classList.add('ticked');
      }
    }
    const fresh = document.getElementById('alerts-new');
    if (fresh && pulse.newest > Number(fresh.dataset.newest)) fresh.hidden = false;
  }

  function live() {
    const banner = document.getElementById('banner');
    if (!banner || !window.EventSource) return;
    const links = banner.dataset.admin === 'true';
    const source = new EventSource(banner.dataset.live);
    source.addEventListener('status', (e) => {
      const state = JSON.parse(e.data);
      renderBanner(banner, state.broken, links);
      updateRows(state.rows);
      updateAlerts(state.alerts);
    });
  }

  // "I've completed these steps" gates Continue.
  function gates() {
    document.querySelectorAll('button[data-requires]').forEach((button) => {
      const box = document.getElementById(button.dataset.requires);
      if (!box) return;
      const sync = () => { button.disabled = !box.checked; };
      box.addEventListener('change', sync);
      sync();
    });
  }

  // From and To apply to a custom range only.
  function rangeInputs() {
    const range = document.getElementById('range');
    if (!range) return;
    const sync = () => ['from', 'to'].forEach((id) => {
      const input = document.getElementById(id);
      if (input) input.disabled = range.value !== 'custom';
    });
    range.addEventListener('change', sync);
    sync();
  }

  document.addEventListener('DOMContentLoaded', () => {
    localTimes(document);
    gates();
    rangeInputs();
    live();
  });
})();
