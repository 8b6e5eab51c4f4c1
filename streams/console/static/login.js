// Sign-in: name, password and a TOTP code to POST /auth/login; the session comes back as an HttpOnly cookie.
const form = document.getElementById("login");
const error = document.getElementById("error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const body = {
    name: document.getElementById("name").value.trim(),
    password: document.getElementById("password").value,
    code: document.getElementById("code").value.trim(),
  };
  const answer = await fetch("/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (answer.ok) {
    window.location.assign("/console");
    return;
  }
  const refusal = await answer.json().catch(() => ({ message: answer.statusText }));
  error.textContent = refusal.message;
  error.dataset.reason = refusal.error || "";
});
