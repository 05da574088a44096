"use strict";
// The rerun command's copy button: report.html's only script, allowed by its hash (apps/templates.py).
(function () {
  const button = document.getElementById("copy-rerun");
  const command = document.getElementById("rerun-command");
  if (!button || !command) return;
  button.hidden = false;
  button.addEventListener("click", async function () {
    window.getSelection().selectAllChildren(command);
    let copied = false;
    try {
      await navigator.clipboard.writeText(command.textContent);
      copied = true;
    } catch (error) {
      try { copied = document.execCommand("copy"); } catch (ignored) { copied = false; }
    }
    button.textContent = copied ? "Copied" : "Selected: press Ctrl+C";
  });
})();
