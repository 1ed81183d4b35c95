// Console pages: progressive enhancement only (every page works without this file).

// Copy buttons beside read-only fields. Without JS the field is there to select and copy by hand; with JS the
// button appears and copies with the clipboard API (secure contexts: https and localhost), else by selection.
for (const button of document.querySelectorAll("button[data-copy]")) {
  const field = document.getElementById(button.dataset.copy);
  if (!field) continue;
  const label = button.textContent;
  button.hidden = false;
  button.addEventListener("click", async () => {
    let copied = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(field.value);
        copied = true;
      } catch (_) {
        copied = false;
      }
    }
    if (!copied) {
      field.focus();
      field.select();
      try {
        copied = document.execCommand("copy");
      } catch (_) {
        copied = false;
      }
    }
    button.textContent = copied ? "Copied" : "Press Ctrl+C";
    button.classList.toggle("copied", copied);
    setTimeout(() => {
      button.textContent = label;
      button.classList.remove("copied");
    }, 2000);
  });
}

// A click in a read-only link field selects all of it, ready to copy.
for (const field of document.querySelectorAll("input.copy-source")) {
  field.addEventListener("focus", () => field.select());
}
