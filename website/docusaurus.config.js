// @ts-check
// The textbook site: English (default) and Urdu (right-to-left), with the chat assistant on every page.
//
// Build-time configuration (environment variables, read only here):
//   TEXTBOOK_API_URL   the query service the chat widget calls (default http://127.0.0.1:8000)
//   TEXTBOOK_SITE_URL  the site's public origin, for canonical URLs and the sitemap (default http://127.0.0.1:3000)
//   TEXTBOOK_BASE_URL  the path the site is served under, e.g. /textbook/ on GitHub Pages (default /)
import {themes as prismThemes} from 'prism-react-renderer';

/** The Prism theme with every token colour darkened (or lightened) until it reaches 4.5:1 on the background. */
function accessibleCodeTheme(theme) {
  const channels = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const luminance = (rgb) => rgb.map((c) => c / 255).map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const contrast = (a, b) => (Math.max(luminance(a), luminance(b)) + 0.05) / (Math.min(luminance(a), luminance(b)) + 0.05);
  const parse = (color) => {
    if (/^#[0-9a-fA-F]{6}$/.test(color || '')) return channels(color);
    const match = /^rgb\((\d+),\s*(\d+),\s*(\d+)\)$/.exec(color || '');
    return match ? match.slice(1).map(Number) : null;
  };
  const background = parse(theme.plain.backgroundColor);
  const towards = luminance(background) > 0.5 ? 0 : 255;
  const fix = (color) => {
    let rgb = parse(color);
    if (!rgb) return color;
    while (contrast(rgb, background) < 4.6) rgb = rgb.map((c) => Math.round(c + (towards - c) * 0.08));
    return `#${rgb.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
  };
  return {
    plain: {...theme.plain, color: fix(theme.plain.color)},
    styles: theme.styles.map((entry) => ({...entry, style: {...entry.style, color: fix(entry.style.color)}})),
  };
}

const apiUrl = (process.env.TEXTBOOK_API_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
const siteUrl = (process.env.TEXTBOOK_SITE_URL || 'http://127.0.0.1:3000').replace(/\/+$/, '');
const baseUrl = process.env.TEXTBOOK_BASE_URL || '/';

/** @type {import('@docusaurus/types').Config} */
const config = {
  title: 'Physical AI & Humanoid Robotics',
  tagline: 'A textbook on robots that sense, think and act in the physical world',
  favicon: 'img/favicon.svg',
  url: siteUrl,
  baseUrl: baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`,
  // Pages are written as docs/<id>.html: any static host (GitHub Pages, the devenv server) serves
  // /docs/<id> without a redirect, and these are the URLs the ingest flow puts in the index.
  trailingSlash: false,
  onBrokenLinks: 'throw',
  onBrokenAnchors: 'throw',
  onDuplicateRoutes: 'throw',
  markdown: {
    format: 'detect', // .md is CommonMark, .mdx is MDX
    hooks: {onBrokenMarkdownLinks: 'throw'},
  },
  i18n: {
    defaultLocale: 'en',
    locales: ['en', 'ur'],
    localeConfigs: {
      en: {label: 'English', direction: 'ltr', htmlLang: 'en'},
      ur: {label: 'اردو', direction: 'rtl', htmlLang: 'ur'},
    },
  },
  customFields: {
    apiUrl,
    chatTimeoutMs: Number(process.env.TEXTBOOK_CHAT_TIMEOUT_MS || 60000),
  },
  presets: [
    [
      'classic',
      /** @type {import('@docusaurus/preset-classic').Options} */
      ({
        docs: {
          routeBasePath: 'docs',
          sidebarPath: './sidebars.js',
        },
        blog: false,
        theme: {customCss: './src/css/custom.css'},
      }),
    ],
  ],
  themeConfig:
    /** @type {import('@docusaurus/preset-classic').ThemeConfig} */
    ({
      colorMode: {respectPrefersColorScheme: true},
      navbar: {
        title: 'Physical AI & Humanoid Robotics',
        items: [
          {type: 'docSidebar', sidebarId: 'textbook', position: 'left', label: 'Textbook'},
          {type: 'localeDropdown', position: 'right'},
        ],
      },
      footer: {
        style: 'dark',
        links: [{label: 'Privacy', to: '/privacy'}],
        copyright: `Physical AI & Humanoid Robotics. Built with Docusaurus.`,
      },
      prism: {
        theme: accessibleCodeTheme(prismThemes.github),
        darkTheme: accessibleCodeTheme(prismThemes.dracula),
        additionalLanguages: ['bash', 'python', 'cpp', 'yaml', 'json'],
      },
    }),
};

export default config;
