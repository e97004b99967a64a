// Applies the stored theme before the page paints (no flash of the wrong theme).
(function () {
  try {
    var t = localStorage.getItem("vigil-theme");
    if (t === "light" || t === "dark") {
      document.documentElement.setAttribute("data-theme", t);
    }
  } catch (e) {
    // localStorage unavailable: follow prefers-color-scheme.
  }
})();
